"""``audit run``: tune, confirm and summarise one or more methods under an equal budget."""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from audit.budget import (
    DEFAULT_SEEDS,
    DEFAULT_STUDENT,
    DEFAULT_TEACHER,
    DEFAULT_TRIALS,
    SEED_MAX,
)
from audit.commands._args import integer, number, positive, positive_minutes
from audit.commands._console import make_console
from audit.errors import AuditError
from methods.catalogue import BASELINE, CLASSICAL, option_flags

if TYPE_CHECKING:
    from audit.study import Study


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="tune, confirm and compare KD methods under an equal budget")
    p.add_argument("study_file", nargs="?", type=Path, help="a declared study (TOML, e.g. studies/digits.toml); flags are then not used")
    p.add_argument("--method", action="append", default=[], help="method to audit (repeatable); nokd and kd are always added as references")
    p.add_argument("--trials", type=positive("--trials"), default=DEFAULT_TRIALS,
                   help=f"search trials per method (default {DEFAULT_TRIALS})")
    p.add_argument("--seeds", type=positive("--seeds"), default=None, help=f"confirmation seeds (default {DEFAULT_SEEDS})")
    p.add_argument("--epochs", type=positive("--epochs"), default=None, help="student epochs per run (default 4)")
    p.add_argument("--augment", default=None, metavar="POLICY",
                   help="augmentation policy of every run: strength (default: the searched strength alone), standard "
                        "(crop with padding and flip), autoaugment-cifar10, or steps joined by '+', e.g. standard+strength")
    p.add_argument("--dataset", default="digits", help="data set (default digits, embedded)")
    p.add_argument("--teacher", default=DEFAULT_TEACHER, help=f"teacher architecture (default {DEFAULT_TEACHER})")
    p.add_argument("--student", default=DEFAULT_STUDENT, help=f"student architecture (default {DEFAULT_STUDENT})")
    p.add_argument("--teacher-weights", default=None, type=Path, metavar="PATH",
                   help="use this released teacher instead of training one: a teacher-cache entry (.safetensors, "
                        "from `audit teachers import`) or any checkpoint it imports; part of the budget")
    p.add_argument("--backend", default="ray", help="ray (default) or local")
    p.add_argument("--storage", default=None, help="Optuna RDB URL, e.g. postgresql://... (default: an Optuna journal file in the study folder)")
    p.add_argument("--out", default="reports", type=Path, help="folder for study folders (default reports)")
    p.add_argument("--name", default=None, help="study name (default: <dataset>-<methods>-<time>)")
    p.add_argument("--data-dir", default=None, type=Path, help="folder holding the torchvision data sets")
    p.add_argument("--download", action="store_true", help="download the data set into --data-dir when online")
    p.add_argument("--cache-dir", default=None, type=Path, help="teacher cache (default ~/.cache/kd-audit/teachers)")
    p.add_argument("--split-seed", type=integer("--split-seed", 0, SEED_MAX), default=0, help="seed of the train/validation split (default 0)")
    p.add_argument("--cpus-per-trial", type=number("--cpus-per-trial", above=0), default=1.0, help="CPUs per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=number("--gpus-per-trial", at_least=0), default=0.0, help="GPUs per trial, fractions allowed (default 0)")
    p.add_argument("--max-concurrent", type=positive("--max-concurrent"), default=None, help="concurrent trials (default: as many as fit)")
    p.add_argument("--address", default=None, help="join a running Ray cluster (auto or host:port)")
    p.add_argument("--max-failures", type=integer("--max-failures", 0), default=1, help="Tune retries of a crashed trial (default 1)")
    p.add_argument("--stale-after", type=positive_minutes, default=None, metavar="MIN",
                   help="with a storage shared by several drivers: another driver's trial silent this many minutes "
                        "is taken as dead and its place run again (default 30)")
    for flag, (method, option) in option_flags().items():  # each method's own options (methods/catalogue.toml)
        many = option.kind == "architectures"
        p.add_argument(flag, dest=_option_dest(method, option.name), action="append" if many else "store",
                       default=None, help=option.help)
    p.add_argument("--paper-protocol", action="store_true", help="give extra stages (takd, ab, ft, fsp) their own full budget; reported as more compute")
    p.add_argument("--margin", type=float, default=None, metavar="M",
                   help="equivalence margin of the claim verdicts in accuracy points, fixed before any run (default 0.5)")
    p.add_argument("--alpha", type=float, default=None, metavar="A", help="level of each test, fixed before any run (default 0.05)")
    p.add_argument("--force", action="store_true", help="run even when the compute estimate is beyond the limit (a week on this hardware)")
    speed = p.add_argument_group("speed settings (not part of the budget; a study file's [accel] unless given here)")
    for flag, what in SPEED_FLAGS.items():
        speed.add_argument(f"--{flag.replace('_', '-')}", dest=f"accel_{flag}", action=argparse.BooleanOptionalAction, default=None, help=what)
    p.set_defaults(func=main)


SPEED_FLAGS = {
    "channels_last": "NHWC layout for activations and weights (default on; oneDNN's and cuDNN's faster path)",
    "bf16": "bf16 autocast of forward passes, CUDA only (default off; changes the numbers)",
    "compile": "torch.compile the student and teachers, CUDA only (default off)",
    "teacher_cache": "reuse the teacher's outputs when batches are not augmented (default on; bitwise exact)",
}


def _with_speed_flags(study: Study, args: argparse.Namespace) -> Study:
    given = {k: getattr(args, f"accel_{k}") for k in SPEED_FLAGS if getattr(args, f"accel_{k}", None) is not None}
    if given:
        study.accel = dataclasses.replace(study.accel, **given)
    return study


def _option_dest(method: str, name: str) -> str:
    return f"option__{method}__{name}"


def _options(args: argparse.Namespace) -> dict[str, dict]:
    """The method options given as flags, by method."""
    given: dict[str, dict] = {}
    for method, option in option_flags().values():
        value = getattr(args, _option_dest(method, option.name), None)
        if value is not None:
            given.setdefault(method, {})[option.name] = value
    return given


def study_from_args(args: argparse.Namespace) -> Study:
    # Imported here: the parser is built for every command, and only the commands that train load torch.
    from audit.study import DEFAULT_RECIPE, Study

    if args.study_file is not None:
        study = Study.read(args.study_file, name=args.name)
        for flag in ("storage", "address"):
            if getattr(args, flag):
                setattr(study, flag, getattr(args, flag))
        if args.stale_after is not None:
            study.stale_after_min = args.stale_after
        if args.teacher_weights is not None:
            study.teacher_weights, study.teacher_sha256 = str(args.teacher_weights), None
        return _with_statistics(_with_speed_flags(study, args), args)
    if not args.method:
        raise AuditError("give at least one --method (see `audit methods`)")
    name = args.name if args.name is not None else f"{args.dataset}-{'-'.join(m.lower() for m in args.method)}-{time.strftime('%Y%m%d-%H%M%S')}"
    kwargs = dict(
        name=name, methods=args.method, dataset=args.dataset, teacher=args.teacher, student=args.student,
        trials=args.trials, split_seed=args.split_seed,
        backend=args.backend, storage=args.storage, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent, address=args.address,
        max_failures=args.max_failures, options=_options(args), paper_protocol=args.paper_protocol,
        teacher_weights=str(args.teacher_weights) if args.teacher_weights is not None else None,
    )
    if args.stale_after is not None:
        kwargs["stale_after_min"] = args.stale_after
    if args.seeds is not None:
        kwargs["seeds"] = list(range(1, args.seeds + 1))
    recipe_changes = {k: v for k, v in (("epochs", args.epochs), ("augment", args.augment)) if v is not None}
    if recipe_changes:
        kwargs["recipe"] = dataclasses.replace(DEFAULT_RECIPE, **recipe_changes)
    return _with_statistics(_with_speed_flags(Study(**kwargs), args), args)


def _with_statistics(study: Study, args: argparse.Namespace) -> Study:
    """--margin and --alpha over the study file's: validated by a fresh Study, as a file's are."""
    given = {k: getattr(args, k, None) for k in ("margin", "alpha") if getattr(args, k, None) is not None}
    return dataclasses.replace(study, **given) if given else study


def print_summary(console: Console, summary, study_dir: Path) -> None:  # noqa: ANN001
    table = Table(title=f"confirmed test accuracy (%), mean ± std over seeds — {study_dir}")
    for col in ("method", "runs", "test acc", f"vs {BASELINE}", f"vs {CLASSICAL}", "search ok/failed", "best config"):
        table.add_column(col, justify="left" if col in ("method", "best config") else "right", no_wrap=col != "best config")
    fmt = lambda v: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.2f}"  # noqa: E731
    for r in summary.itertuples():
        acc = "—" if math.isnan(r.test_mean) else f"{r.test_mean:.2f} ± {0.0 if math.isnan(r.test_std) else r.test_std:.2f}"
        table.add_row(
            r.method, str(r.runs), acc, "" if r.method == BASELINE else fmt(getattr(r, f"vs_{BASELINE}")),
            "" if r.method == CLASSICAL else fmt(getattr(r, f"vs_{CLASSICAL}")),
            f"{r.search_ok}/{r.search_failed}", r.best_config,
        )
    console.print(table)


def main(args: argparse.Namespace) -> int:
    from audit import pipeline
    from audit.budget import check_limit
    from audit.commands._progress import ConsoleProgress

    console = make_console()
    study = study_from_args(args)
    paths = pipeline.Paths(out=args.out, data_dir=args.data_dir, cache_dir=args.cache_dir, download=args.download)
    splits = pipeline.prepare(study, paths)
    cost = pipeline.compute_estimate(study, splits, paths)
    check_limit(cost, force=args.force)
    study_dir = pipeline.create(study, paths)
    progress = ConsoleProgress(console, study)
    progress.announce()
    console.print(cost.line(), highlight=False)
    summary = pipeline.run_study(study, study_dir, splits, paths, progress)
    print_summary(console, summary, study_dir)
    console.print(f"results: {study_dir / 'results.csv'}")
    return 0
