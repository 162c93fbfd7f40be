"""``audit reproduce CLAIM_ID [CLAIM_ID ...]``: a claim as it was published, beside the
equal-budget audit.

Each claim's data set, pair, method, selection rule and runs come from the claims registry, its
training protocol from its source's preset (studies/presets/); the as-published arm trains it over
seeds on the whole training split and judges it with the claim's own rule. ``--with-audit`` also
runs the equal-budget arm (the method with nokd and kd on the same pair) and the report puts the
arms side by side. ``--dry-run`` prints each claim's protocol, runs and measured compute instead.
A study file (``audit reproduce file.toml``) holds the same settings under their flag names.
"""
from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

from rich.console import Console

from audit.commands._args import positive
from audit.commands._console import make_console
from audit.errors import AuditError

# A study file's keys: the flags' names (with '_'), and the claims.
FILE_KEYS = ("name", "claims", "with_audit", "trials", "epochs", "seeds", "backend", "storage", "address",
             "teacher_weights", "throughput", "cpus_per_trial", "gpus_per_trial", "max_concurrent")


def _tflops(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--throughput must be a positive number of TFLOP/s, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from audit.reproduce.plan import AUDIT_TRIALS, DEFAULT_THROUGHPUT_TFLOPS

    p = sub.add_parser("reproduce", help="reproduce published claims as published, beside the equal-budget audit")
    p.add_argument("claims", nargs="+", metavar="CLAIM_ID",
                   help="claim ids of the registry (see `audit claims`), 'all' for every mapped claim, or one study file (.toml)")
    p.add_argument("--data-dir", default=None, type=Path, help="folder holding the data sets (cifar-10-batches-py, cifar-100-python)")
    p.add_argument("--download", action="store_true", help="download the data sets into --data-dir when online")
    p.add_argument("--cache-dir", default=None, type=Path, help="teacher cache (default ~/.cache/kd-audit/teachers)")
    p.add_argument("--with-audit", action="store_true", help="also run the equal-budget arm (the method, nokd and kd tuned on the same pair)")
    p.add_argument("--trials", type=positive("--trials"), default=AUDIT_TRIALS,
                   help=f"search trials per method of the equal-budget arm (default {AUDIT_TRIALS})")
    p.add_argument("--epochs", type=positive("--epochs"), default=None, help="epochs instead of the source's (named in the report)")
    p.add_argument("--seeds", type=positive("--seeds"), default=None, help="runs per claim instead of the claim's (named in the report)")
    p.add_argument("--teacher-weights", default=None, type=Path, metavar="PATH",
                   help="the source's released teacher (a checkpoint or a teacher-cache entry) for claims that share one teacher")
    p.add_argument("--backend", default="ray", help="ray (default) or local")
    p.add_argument("--storage", default=None, help="Optuna RDB URL for the equal-budget arm (default: an Optuna journal file in its folder)")
    p.add_argument("--address", default=None, help="join a running Ray cluster (auto or host:port)")
    p.add_argument("--out", default="reports", type=Path, help="folder for study folders (default reports)")
    p.add_argument("--name", default=None, help="folder name (default: reproduce-<claims>-<time>)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per run (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per run, fractions allowed (default 0)")
    p.add_argument("--max-concurrent", type=positive("--max-concurrent"), default=None, help="concurrent search trials of the equal-budget arm")
    p.add_argument("--dry-run", action="store_true", help="print each claim's protocol, runs and compute, and train nothing")
    p.add_argument("--throughput", type=_tflops, default=None, metavar="TFLOPS",
                   help=f"sustained training TFLOP/s of one GPU, for the GPU-hours of --dry-run (default {DEFAULT_THROUGHPUT_TFLOPS:g}, "
                        "a planning figure, not a measurement)")
    p.set_defaults(func=main)
    _DEFAULTS.update({a.dest: a.default for a in p._actions})


_DEFAULTS: dict[str, object] = {}  # the flags' defaults: a study file fills the flags left at them


def _from_file(path: Path, args: argparse.Namespace) -> list[str]:
    """A study file's settings, overridden by the flags given on the command line."""
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"cannot read study file {str(path)!r}: {exc}") from None
    stray = sorted(set(d) - set(FILE_KEYS))
    if stray:
        raise AuditError(f"unknown keys {stray} in {path.name}; allowed: {', '.join(FILE_KEYS)}")
    claims = d.get("claims")
    if not isinstance(claims, list) or not claims or not all(isinstance(c, str) for c in claims):
        raise AuditError(f"{path.name} needs claims = [\"C001\", ...]")
    for key, value in d.items():  # a flag given on the command line wins over the file
        if key != "claims" and getattr(args, key, None) == _DEFAULTS.get(key):
            setattr(args, key, Path(value) if key == "teacher_weights" else value)
    return claims


def _reproduction(args: argparse.Namespace):  # noqa: ANN202 - audit.reproduce.plan.Reproduction
    from audit.reproduce.plan import DEFAULT_THROUGHPUT_TFLOPS, Reproduction
    from audit.reproduce.protocol import (
        Overrides,
        find_claims,
        mapped_claim_ids,
        resolve,
    )

    ids = list(args.claims)
    if len(ids) == 1 and ids[0].endswith(".toml"):
        ids = _from_file(Path(ids[0]), args)
    if [i.lower() for i in ids] == ["all"]:
        ids = mapped_claim_ids()
    overrides = Overrides(epochs=args.epochs, seeds=args.seeds, released_teacher=args.teacher_weights is not None)
    protocols = [resolve(row, overrides) for row in find_claims(ids)]
    name = args.name or f"reproduce-{'-'.join(ids[:3]).lower()}{'-etc' if len(ids) > 3 else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Reproduction(
        name=name, protocols=protocols, with_audit=bool(args.with_audit), trials=args.trials, backend=args.backend,
        storage=args.storage, address=args.address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, throughput_tflops=args.throughput or DEFAULT_THROUGHPUT_TFLOPS,
        teacher_weights=str(args.teacher_weights) if args.teacher_weights is not None else None,
    )


def main(args: argparse.Namespace) -> int:
    from audit.engine.train import Accel

    console = make_console()
    rep = _reproduction(args)
    rep.accel = Accel()
    if args.dry_run:
        from audit.commands._reproduce_plan import print_plan

        return print_plan(console, rep, data_dir=args.data_dir, cache_dir=args.cache_dir)
    return _run(console, rep, args)


def _run(console: Console, rep, args: argparse.Namespace) -> int:  # noqa: ANN001
    from audit import pipeline
    from audit.commands._progress import ConsoleProgress
    from audit.commands._reproduce_plan import ArmProgress, print_arms
    from audit.reproduce import arms

    splits = arms.check(rep, data_dir=args.data_dir, cache_dir=args.cache_dir, download=args.download)
    studies = rep.audit_studies() if rep.with_audit else []
    rep_dir = arms.create(rep, args.out)
    console.print(f"reproduction [bold]{rep.name}[/]: {len(rep.protocols)} claim(s), "
                  f"{sum(len(p.seeds) for p in rep.protocols)} as-published run(s), backend {rep.backend}"
                  + (f"; equal-budget arm: {len(studies)} study(ies) of {rep.trials} trials per method" if studies else ""))
    timings = arms.run_published(rep, rep_dir, splits, cache_dir=args.cache_dir, progress=ArmProgress(console))
    for study, _ in studies:
        paths = pipeline.Paths(out=rep_dir, data_dir=args.data_dir, cache_dir=args.cache_dir, download=args.download)
        s = pipeline.prepare(study, paths)
        study_dir = pipeline.create(study, paths)
        progress = ConsoleProgress(console, study)
        progress.announce()
        pipeline.run_study(study, study_dir, s, paths, progress, keep_backend=True)  # the next study runs on it too
    from audit import folder
    from audit.report.write import write_report

    folder.write_json(rep_dir, "timings.json", timings)
    index = write_report(rep_dir)
    print_arms(console, rep_dir)
    console.print(f"report: {index}")
    return 0
