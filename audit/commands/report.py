"""``audit report reports/<name>``: write the reproducibility report of a study folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from audit.commands._args import any_number
from audit.errors import AuditError


def register(sub: argparse._SubParsersAction) -> None:
    # Deferred: the CLI builds every command's parser, and these modules load scipy.
    from audit.judge.claim_model import NOISES
    from audit.judge.multiple import ADJUSTMENTS
    from audit.report.settings import SPREADS

    p = sub.add_parser("report", help="write a study's reproducibility report (index.html, report.md, tables)",
                       description="Write index.html (self-contained), report.md and tables/*.csv into a study "
                                   "folder; works for a study that is still running or was interrupted.")
    p.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="the study folder, e.g. reports/<name>")
    p.add_argument("--margin", type=any_number("--margin"), default=None,
                   help="equivalence margin of claim verdicts, in accuracy points (default: the one study.toml fixed "
                        "before the runs; another value is shown beside every verdict)")
    p.add_argument("--alpha", type=any_number("--alpha"), default=None,
                   help="level of each test (default: the one study.toml fixed before the runs)")
    p.add_argument("--claim-noise", choices=NOISES, default="shared",
                   help="a claim's own seed noise: shared (default: one spread for its runs and ours), welch (its "
                        "stated std kept apart) or exact (the claim as a constant)")
    p.add_argument("--spread", choices=list(SPREADS), default="runs",
                   help="seed spread of the absolute verdicts: runs (each method's own, default) or study (pooled "
                        "over the study's methods)")
    p.add_argument("--correction", choices=ADJUSTMENTS, default="bh",
                   help="p-value adjustment across the report: bh (Benjamini-Hochberg, default) or holm")
    p.add_argument("--claims", type=Path, default=None, help="claims registry CSV (default: studies/claims/registry.csv)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # Deferred: the report loads pandas, matplotlib, optuna and jinja2 (never torch), which only
    # this command needs.
    from audit.report.write import write_report

    if args.claims is not None and not args.claims.is_file():
        raise AuditError(f"claims file not found: {args.claims}")
    index = write_report(args.study_dir, margin=args.margin, alpha=args.alpha, correction=args.correction,
                         claims_path=args.claims, noise=args.claim_noise, spread=args.spread)
    print(f"report: {index}")
    print(f"        {index.with_name('report.md')}")
    return 0
