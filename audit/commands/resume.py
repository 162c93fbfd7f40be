"""``audit resume reports/<name>``: continue an interrupted study from its storage and journal.

Finished trials are kept, trials a dead driver left running are re-run, and each method ends
with exactly its budget of trials.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from audit import folder
from audit.commands._args import positive_minutes
from audit.commands._console import make_console
from audit.commands.run import print_summary
from audit.errors import AuditError

if TYPE_CHECKING:
    from audit.study import Study


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue an interrupted study")
    p.add_argument("study_dir", type=Path, help="the study folder, e.g. reports/<name>")
    p.add_argument("--storage", default=None, help="the Optuna storage URL, if it was given with a password")
    p.add_argument("--address", default=None, help="join a running Ray cluster (auto or host:port)")
    p.add_argument("--stale-after", type=positive_minutes, default=None, metavar="MIN",
                   help="another driver's trial silent this many minutes is taken as dead (default: the study's)")
    p.add_argument("--allow-unequal-budgets", action="store_true", help="compare results made under different budgets (the output says so)")
    p.add_argument("--data-dir", default=None, type=Path)
    p.add_argument("--cache-dir", default=None, type=Path)
    p.set_defaults(func=main)


def load_study_dir(study_dir: Path) -> Study:
    from audit.study import Study  # torch loads only for the commands that train

    if not (study_dir / "study.toml").is_file():
        raise AuditError(f"{str(study_dir)!r} is not a study folder (no study.toml in it)")
    study = Study.read(study_dir / "study.toml")
    if study.name != study_dir.name:
        raise AuditError(f"study folder {study_dir.name!r} holds study {study.name!r}; folders cannot be renamed")
    return study


def check_budget_unchanged(study: Study, study_dir: Path, *, allow_unequal: bool) -> None:
    """Refuse, before anything runs, to add trials under a budget other than the finished ones'
    (study.toml edited since): otherwise the mix would only be refused after all the work."""
    ran = {r.get("budget_hash") for r in folder.read(study_dir)} - {study.budget_hash()}
    if ran and not allow_unequal:
        raise AuditError(
            f"study.toml's budget (hash {study.budget_hash()}) differs from the budget its finished runs used "
            f"({', '.join(sorted(map(str, ran)))}); refusing to mix them (pass --allow-unequal-budgets to go on anyway)"
        )


def main(args: argparse.Namespace) -> int:
    from audit import pipeline
    from audit.commands._progress import ConsoleProgress
    from audit.search.drivers import reconcile
    from audit.search.recovery import mend

    console = make_console()
    study_dir = args.study_dir
    study = load_study_dir(study_dir)
    if args.storage:
        study.storage = args.storage
    elif study.storage and "***" in study.storage:
        raise AuditError("this study's storage URL has a password, which is never written down; give it again with --storage")
    if args.address:
        study.address = args.address
    if args.stale_after is not None:
        study.stale_after_min = args.stale_after
    check_budget_unchanged(study, study_dir, allow_unequal=args.allow_unequal_budgets)
    paths = pipeline.Paths(out=study_dir.parent, data_dir=args.data_dir, cache_dir=args.cache_dir)
    splits = pipeline.prepare(study, paths, new=False)
    mended = mend(study, study_dir)
    reconcile(study, study_dir)
    progress = ConsoleProgress(console, study)
    progress.announce()
    for line in mended:
        progress.warning(line)
    summary = pipeline.run_study(study, study_dir, splits, paths, progress, allow_unequal_budgets=args.allow_unequal_budgets)
    print_summary(console, summary, study_dir)
    return 0
