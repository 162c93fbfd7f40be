"""Orchestration overhead of the search: the share of wall time a 20-trial study spends outside
training, with 1 and with 2 concurrent trials.

Runs ``audit run --method kd --trials 10`` (nokd and kd are always searched: 20 trials) through
Ray Tune, once per concurrency, each in a fresh process and Ray instance, then compares

    training   = sum of the search trials' ``wall_s`` (results.csv: model build, training, evaluation)
    slot time  = concurrency x the driver's search wall time (timings.json ``search_s``,
                 Ray start-up, scheduling, Optuna and journal writes included)

and prints ``overhead = 1 - training / slot time``: the share of the trial slots' time not spent
in a trial. It also times a bare Ray start-up (part of every Ray search) and prints the overhead
without it, and runs the same study through the in-process local backend (one trial at a time,
no Ray) as a reference. Not a test: numbers depend on the machine and on what else runs on it.

    python benchmarks/orchestration_overhead.py [--concurrency 1 2] [--no-local] [--cache-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def ray_startup_s() -> float:
    """Seconds a fresh local Ray instance takes to start, as the driver starts it."""
    code = ("import os, time, ray; t = time.perf_counter(); "
            "ray.init(address='local', num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False); "
            "print(time.perf_counter() - t); ray.shutdown()")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])


def run_study(out: Path, name: str, backend: str, concurrency: int, args: argparse.Namespace, startup: float) -> dict:
    cmd = [sys.executable, "-m", "audit.cli", "run", "--method", "kd", "--trials", str(args.trials_per_method),
           "--seeds", "1", "--epochs", str(args.epochs), "--backend", backend, "--out", str(out), "--name", name]
    if backend == "ray":
        cmd += ["--max-concurrent", str(concurrency)]
    if args.cache_dir:
        cmd += ["--cache-dir", str(args.cache_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    folder = out / name
    search = pd.read_csv(folder / "results.csv").query("phase == 'search'")
    timings = json.loads((folder / "timings.json").read_text())
    training, wall = float(search.wall_s.sum()), float(timings["search_s"])
    slots = concurrency * wall
    startup = startup if backend == "ray" else 0.0
    return {
        "backend": backend, "concurrency": concurrency, "trials": len(search),
        "search_wall_s": wall, "training_s": training, "slot_s": slots,
        "overhead_share": 1 - training / slots, "overhead_per_trial_s": (slots - training) / len(search),
        "ray_start_s": startup, "overhead_share_after_start": 1 - training / (concurrency * (wall - startup)),
        "mean_trial_s": training / len(search), "process_s": time.perf_counter() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    p.add_argument("--trials-per-method", type=int, default=10, help="per method; nokd and kd make it x2 (default 10)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--no-local", action="store_true", help="skip the local-backend reference run")
    p.add_argument("--cache-dir", type=Path, default=None, help="teacher cache (default the audit's own)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args()

    startup = ray_startup_s()
    print(f"a bare local Ray start-up takes {startup:.1f}s here", flush=True)
    runs = [("ray", k) for k in args.concurrency] + ([] if args.no_local else [("local", 1)])
    rows = []
    with tempfile.TemporaryDirectory(prefix="kd-overhead-") as tmp:
        for backend, k in runs:
            print(f"running {2 * args.trials_per_method} trials, {backend}, {k} concurrent ...", flush=True)
            rows.append(run_study(Path(tmp), f"overhead-{backend}-{k}", backend, k, args, startup))
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.float_format", "{:.2f}".format):
        print(table[["backend", "concurrency", "trials", "search_wall_s", "training_s", "slot_s", "overhead_share",
                     "overhead_per_trial_s", "overhead_share_after_start", "mean_trial_s"]].to_string(index=False))
    for r in rows:
        print(f"{r['backend']}, {r['concurrency']} concurrent: {100 * r['overhead_share']:.1f}% of the trial slots' "
              f"wall time outside training ({r['overhead_per_trial_s']:.1f}s per trial; "
              f"{100 * r['overhead_share_after_start']:.1f}% without Ray's {r['ray_start_s']:.1f}s start-up)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
