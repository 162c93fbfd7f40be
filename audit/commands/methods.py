"""``audit methods``: every registered method with its paper, family and extra cost."""
from __future__ import annotations

import argparse

from rich.table import Table

from audit.commands._console import make_console
from methods import get_method, method_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the KD methods with their papers")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    table = Table(title="KD methods")
    for col in ("name", "aliases", "paper", "year", "family", "searched", "extra cost"):
        table.add_column(col)
    for name in method_names():
        m = get_method(name)
        table.add_row(
            m.name, ", ".join(m.aliases), m.paper, str(m.year or ""), m.family,
            ", ".join(m.search_space()), m.extra_cost,
        )
    make_console().print(table)
    return 0
