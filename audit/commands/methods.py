"""``audit methods``: every method in the catalogue with its paper, family and extra cost, then
each method's loss convention (how its weights relate to its authors' and the benchmarks' code)."""
from __future__ import annotations

import argparse

from rich.table import Table

from audit.commands._console import make_console
from methods.catalogue import cards


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the KD methods with their papers")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    table = Table(title="KD methods")
    for col in ("name", "aliases", "paper", "year", "family", "searched", "extra cost"):
        table.add_column(col)
    for c in cards().values():
        table.add_row(c.name, ", ".join(c.aliases), c.paper, str(c.year or ""), c.family,
                      ", ".join(c.search_space()), c.extra_cost)
    console = make_console()
    console.print(table)
    conventions = Table(title="Loss conventions: our values against the authors' and the benchmarks' code "
                              "(the presets in studies/presets/ convert)")
    conventions.add_column("name")
    conventions.add_column("convention")
    for c in cards().values():
        conventions.add_row(c.name, c.convention)
    console.print(conventions)
    return 0
