"""``audit bench``: KD training throughput of our engine against a reference loop, and the main job's wall time."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from audit.commands._args import positive
from audit.errors import AuditError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="KD training throughput: our engine against a DataLoader + PIL reference loop")
    p.add_argument("--case", choices=("all", "cifar", "digits", "none"), default="all",
                   help="cifar: resnet26 -> resnet8 at 3x32x32 (synthetic); digits: resnet20 -> resnet8 at 1x8x8; "
                        "none: only --main-job and --accuracy (default all)")
    p.add_argument("--steps", type=positive("--steps"), default=20, help="training steps per measurement (default 20)")
    p.add_argument("--repeats", type=positive("--repeats"), default=3, help="measurements per loop; medians are compared (default 3)")
    p.add_argument("--batch-size", type=positive("--batch-size"), default=64, help="batch size (default 64, as the studies)")
    p.add_argument("--threads", type=positive("--threads"), default=None, help="torch threads for both loops (default: every core)")
    p.add_argument("--workers", type=int, default=0, help="the reference DataLoader's worker processes (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both loops train (default cpu)")
    p.add_argument("--bf16", action="store_true", help="ours: bf16 autocast (CUDA only; a no-op on the CPU)")
    p.add_argument("--compile", action="store_true", help="ours: torch.compile (CUDA only; a no-op on the CPU)")
    p.add_argument("--main-job", action="store_true",
                   help="also time `audit run --method feature_kd` on digits and split it into teacher, search, confirmation, orchestration")
    p.add_argument("--job-trials", type=positive("--job-trials"), default=50, help="main job: trials per method (default 50)")
    p.add_argument("--job-seeds", type=positive("--job-seeds"), default=None, help="main job: confirmation seeds (default: audit run's)")
    p.add_argument("--job-epochs", type=positive("--job-epochs"), default=None, help="main job: epochs (default: the study default)")
    p.add_argument("--job-out", type=Path, default=None, help="main job: folder for its study folder (default: a temporary folder)")
    p.add_argument("--accuracy", action="store_true",
                   help="also check that the speed settings (channels-last; bf16 and torch.compile on CUDA) keep accuracy: "
                        "kd on digits over seeds, each setting against plain float32 NCHW")
    p.add_argument("--acc-epochs", type=positive("--acc-epochs"), default=8, help="accuracy check: epochs per run (default 8)")
    p.add_argument("--acc-seeds", type=positive("--acc-seeds"), default=3, help="accuracy check: seeds per setting (default 3, at least 2)")
    p.add_argument("--cache-dir", type=Path, default=None, help="main job and accuracy check: teacher cache (default: the user's cache)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # Imported here: the parser is built for every command, and only the commands that train load torch.
    import torch

    from audit.engine import bench
    from audit.engine.train import Accel

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise AuditError("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    accel = Accel(bf16=args.bf16, compile=args.compile)  # the GPU settings are no-ops on the CPU
    speedup = None
    for key, case in bench.cases().items():
        if args.case not in ("all", key):
            continue
        print(f"case {key}: {case.title}, {case.teacher} -> {case.student}, batch {args.batch_size}, "
              f"{args.steps} steps x {args.repeats} repeats, {threads} threads, {device}, reference workers {args.workers}", flush=True)
        m = bench.measure(case, steps=args.steps, repeats=args.repeats, batch_size=args.batch_size,
                          workers=args.workers, accel=accel, device=device, log=lambda line: print(line, flush=True))
        print("\n".join(bench.report(m)), flush=True)
        if key == "cifar":
            speedup = m.ratio
    if args.accuracy:
        if args.acc_seeds < 2:
            raise AuditError(f"--acc-seeds must be at least 2 to compare settings, got {args.acc_seeds}")
        print(f"accuracy check on {device}: kd, {args.acc_seeds} seeds x {args.acc_epochs} epochs per setting", flush=True)
        rows = bench.accuracy_check(epochs=args.acc_epochs, seeds=args.acc_seeds, device=device, cache_dir=args.cache_dir,
                                    log=lambda line: print(line, flush=True))
        print("\n".join(bench.accuracy_report(rows, args.acc_epochs)), flush=True)
    if args.main_job:
        with tempfile.TemporaryDirectory(prefix="kd-audit-bench-") as tmp:
            out = args.job_out or Path(tmp)
            split = bench.main_job(out, trials=args.job_trials, seeds=args.job_seeds, epochs=args.job_epochs,
                                   cache_dir=args.cache_dir)
            print("\n".join(bench.job_report(split)), flush=True)
    if speedup is not None:
        print(f"speedup vs reference: {speedup:.2f}x")
    return 0
