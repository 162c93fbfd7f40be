"""``audit aggregate REPORT_DIR ...``: one verdict per method across several study folders (pairs,
data sets), with rliable's aggregate metrics, performance profiles and the cross-architecture
matrix, as a report of its own."""
from __future__ import annotations

import argparse
from pathlib import Path

from audit.commands._args import any_number


def register(sub: argparse._SubParsersAction) -> None:
    # Deferred: the CLI builds every command's parser; this one needs only the names of the choices.
    from audit.judge.multiple import ADJUSTMENTS

    p = sub.add_parser("aggregate", help="judge every method across several study folders (pairs, data sets)",
                       description="Read several study folders as tasks and write one report: a verdict per method "
                                   "(does its gain over no KD hold on every task?), interquartile means with "
                                   "stratified bootstrap intervals, the probability of improvement over the "
                                   "references, performance profiles and the cross-architecture matrix. Folders "
                                   "made under different budgets are refused unless --allow-unequal-budgets.")
    p.add_argument("study_dirs", nargs="+", type=Path, metavar="REPORT_DIR", help="study folders, e.g. reports/<name>")
    p.add_argument("--out", type=Path, default=Path("reports") / "aggregate",
                   help="folder for the aggregate report (default reports/aggregate)")
    p.add_argument("--allow-unequal-budgets", action="store_true",
                   help="aggregate folders made under different budgets anyway (the report says so)")
    p.add_argument("--normalise", choices=("gain", "teacher"), default="gain",
                   help="score of a run: its gain over the reference in points (default), or that gain over the "
                        "teacher's (0 = reference, 1 = teacher)")
    p.add_argument("--margin", type=any_number("--margin"), default=None,
                   help="margin of 'not on every task', in points (default: the one every folder fixed before its runs)")
    p.add_argument("--alpha", type=any_number("--alpha"), default=None,
                   help="level of each test (default: the one every folder fixed before its runs)")
    p.add_argument("--correction", choices=ADJUSTMENTS, default="bh",
                   help="p-value adjustment across the verdicts: bh (Benjamini-Hochberg, default) or holm")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # Deferred: the report loads pandas, matplotlib and jinja2 (never torch), which only this command needs.
    from audit.report.aggregate.write import write_aggregate

    index = write_aggregate(args.study_dirs, args.out, allow_unequal=args.allow_unequal_budgets, alpha=args.alpha,
                            margin=args.margin, correction=args.correction, normalise=args.normalise == "teacher")
    print(f"report: {index}")
    print(f"        {index.with_name('report.md')}")
    return 0
