"""``audit claims``: list and filter the published claims in the registry."""
from __future__ import annotations

import argparse
import math
import re

from audit.errors import AuditError

_FILTERS = ("dataset", "method", "teacher", "student", "paper")


def _short_paper(paper: str) -> str:
    """'Tian et al. 2020, Contrastive ...' -> 'Tian et al. 2020' (the full name is in the CSV)."""
    return re.split(r",| \(", paper, maxsplit=1)[0].strip()


def _short_source(source: str) -> str:
    """'HobbitLong/RepDistiller@b84f547:README.md' -> 'HobbitLong/RepDistiller'."""
    return re.split(r"[@:]", source, maxsplit=1)[0].strip()


def _id_or_name(row, field: str) -> str:
    return row[f"{field}_id"] or f"{row[field]}?"  # '?' marks a paper's name with no mapping here


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from rich.table import Table

    from audit.commands._console import make_console
    from audit.judge import claims as reg
    from audit.judge.claim_warnings import sanity_warnings

    df = reg.load_claims(args.registry)
    given = {f: getattr(args, f) for f in _FILTERS if getattr(args, f) is not None}
    # A filter that matches nothing on its own is most likely a typo: name what exists.
    for field, value in given.items():
        if value.strip() == "":
            raise AuditError(f"--{field} needs a value")
        if reg.filter_claims(df, **{field: value}).empty:
            if field == "paper":
                raise AuditError(f"no claim's paper or source contains {value!r}")
            ids = sorted(n for n in set(df[f"{field}_id"]) if n)
            raise AuditError(f"no claim has {field} {value!r}; our ids: {', '.join(ids)} "
                             f"(a paper's own spelling, e.g. {df[field].iloc[0]!r}, works too)")
    sel = reg.filter_claims(df, **given)

    # Piped output keeps whole rows; a terminal gets its own width.
    console = make_console()
    title = "Published claims" + (" (" + ", ".join(f"{k}={v}" for k, v in given.items()) + ")" if given else "")
    table = Table(title=title)
    for col in ("claim", "paper", "method", "dataset", "teacher -> student", "claimed", "rule", "source"):
        table.add_column(col, no_wrap=True, overflow="ellipsis", justify="right" if col == "claimed" else "left")
    for _, row in sel.iterrows():
        claimed = row["claimed_top1"]
        rule = row["rule"] + ("" if row["rule_basis"] == "stated" else " (assumed)")
        if row["rule"] in ("mean_of_k", "median_of_k") and not pd.isna(row["claimed_runs"]):
            rule = rule.replace("_k", f"_{int(row['claimed_runs'])}")
        table.add_row(row["claim_id"], _short_paper(row["paper"]), _id_or_name(row, "method"),
                      _id_or_name(row, "dataset"),
                      f"{_id_or_name(row, 'teacher')} -> {_id_or_name(row, 'student')}",
                      "N/A" if math.isnan(claimed) else f"{claimed:g}", rule, _short_source(row["source"]))
    console.print(table)
    n_unmapped = int((sel["mapping_status"] != "ok").sum())
    console.print(f"{len(sel)} claim{'s' if len(sel) != 1 else ''}"
                  f" ({n_unmapped} with names that have no mapping here, marked '?')", highlight=False)
    names = reg.unmapped_names(sel)
    if names:
        console.print("unmapped names: " + ", ".join(f"{n} ({c})" for n, c in sorted(names.items())),
                      soft_wrap=True, highlight=False)
    if args.warnings:
        found = sanity_warnings(sel)
        console.print(f"{len(found)} warning{'s' if len(found) != 1 else ''}:", highlight=False)
        for w in found:
            console.print("  " + w, soft_wrap=True, highlight=False, markup=False)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "claims", help="list and filter published claims",
        description="List the published claims in the registry. Filters take our ids "
                    "(feature_kd, wrn_40_2, cifar100) or the paper's names (FitNet, WRN-40-2, CIFAR-100).")
    p.add_argument("--dataset", help="data set, e.g. cifar100 or CIFAR-100")
    p.add_argument("--method", help="method, e.g. feature_kd or FitNet")
    p.add_argument("--teacher", help="teacher architecture, e.g. wrn_40_2 or wrn-40-2")
    p.add_argument("--student", help="student architecture, e.g. resnet8x4")
    p.add_argument("--paper", help="part of the paper or source, e.g. Tian or mdistiller")
    p.add_argument("--warnings", action="store_true", help="also print the sanity warnings for these claims")
    p.add_argument("--registry", default=None, help="registry CSV (default studies/claims/registry.csv)")
    p.set_defaults(func=run)
