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

Parts that do not depend on training, measured in CPU seconds of the driver (the figure that
holds on a shared, loaded machine; wall seconds are printed beside them):

    --driver N     the searcher's work per trial without any training (Optuna ask and tell, budget
                   checks, heartbeats, the journal): N trials per method of nokd, kd and
                   feature_kd, CPU and wall ms per trial, SQL writes and journal fsyncs per trial
    --report DIR   writing the report of a finished study folder, section by section
    --imports      the driver's imports (CLI, pipeline with torch, Ray Tune, the report)

    python benchmarks/orchestration_overhead.py [--concurrency 1 2] [--no-local] [--cache-dir DIR]
    python benchmarks/orchestration_overhead.py --driver 50 --report reports/<study> --imports --no-studies
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


def driver_per_trial(trials: int) -> dict:
    """The searcher's own cost per trial, every trial finished at once with a made-up result."""
    import os
    import time

    import sqlalchemy

    from audit.pipeline import Paths, create
    from audit.search.objective import METRIC
    from audit.search.searchers import build_searcher
    from audit.study import Study

    writes, fsyncs = [0], [0]

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        writes[0] += statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsyncs[0] += 1
        real_fsync(fd)

    os.fsync = fsync
    try:
        with tempfile.TemporaryDirectory(prefix="kd-driver-") as tmp:
            study = Study(name="driver", methods=["feature_kd"], trials=trials, seeds=[1], backend="local")
            searcher, _ = build_searcher(study, create(study, Paths(Path(tmp))), None)
            cpu, wall, n = time.process_time(), time.perf_counter(), 0
            writes[0] = fsyncs[0] = 0
            while isinstance(config := searcher.suggest(f"t{n}"), dict):
                for epoch in (1, 2):  # a 3-epoch trial reports twice before its final record
                    searcher.on_trial_result(f"t{n}", {METRIC: 50.0 + epoch, "training_iteration": epoch})
                value = 90.0 + (n * 37 % 11) / 3
                searcher.on_trial_complete(f"t{n}", {"method": config["method"], "seed": 0, "status": "ok", METRIC: value,
                                                     "val_acc": value, "val_curve": [80.0, 85.0, value], "wall_s": 1.0})
                n += 1
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        os.fsync = real_fsync
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    return {"trials": n, "cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n, "sql_writes": writes[0] / n,
            "fsyncs": fsyncs[0] / n}


def report_sections(study_dir: Path) -> list[tuple[str, float, float]]:
    """(section, CPU s, wall s) of writing the report of ``study_dir``, figures drawn included."""
    import time

    from audit import folder as study_folder
    from audit.judge.claims import load_claims
    from audit.report import figures
    from audit.report.runs import collect_runs
    from audit.report.sections import (
        budget,
        curves,
        header,
        matrix,
        provenance,
        ranking,
        sensitivity,
        verdicts,
    )
    from audit.report.settings import Settings

    def timed(name: str, make) -> tuple[str, float, float]:  # noqa: ANN001
        cpu, wall = time.process_time(), time.perf_counter()
        made = make()
        for block in getattr(made, "blocks", []):
            if block.kind == "figure" and block.figure is not None:
                block.figure.png  # noqa: B018 - the figure is drawn when its PNG is asked for
        return name, time.process_time() - cpu, time.perf_counter() - wall

    folder = study_folder.load(study_dir)
    runs, colour, prog = collect_runs(folder), figures.colours(folder.all_methods), study_folder.progress(folder)
    settings, registry = Settings(1.0, 0.05, "bh", None), load_claims(None)
    return [
        timed("header", lambda: header.header(folder, prog)),
        timed("verdicts", lambda: verdicts.verdict_section(folder, runs, settings, registry)),
        timed("ranking", lambda: ranking.ranking_section(folder, runs, colour)),
        timed("curves", lambda: curves.budget_curves_section(folder, runs, colour)),
        timed("sensitivity", lambda: sensitivity.sensitivity_section(folder, runs, colour, registry)),
        timed("matrix", lambda: matrix.matrix_section(folder)),
        timed("budget", lambda: budget.budget_section(folder, prog, colour)),
        timed("provenance", lambda: provenance.provenance_section(folder, settings)),
    ]


def import_seconds(module: str) -> tuple[float, float]:
    """(CPU s, wall s) of importing ``module`` in a fresh interpreter."""
    code = (f"import time; c, w = time.process_time(), time.perf_counter(); import {module}; "
            "print(time.process_time() - c, time.perf_counter() - w)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def ray_start_stop_s() -> tuple[float, float]:
    """(start-up, shutdown) wall seconds of a local Ray instance as the driver starts it."""
    code = ("import time, ray; from audit.search.backend import start_local_ray; t = time.perf_counter(); "
            "start_local_ray(); s = time.perf_counter() - t; t = time.perf_counter(); ray.shutdown(); "
            "print(s, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def load_line() -> str:
    import os

    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


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
    p.add_argument("--driver", type=int, default=None, metavar="N", help="also time the searcher's work per trial (N trials per method)")
    p.add_argument("--report", type=Path, default=None, metavar="DIR", help="also time writing the report of this study folder")
    p.add_argument("--imports", action="store_true", help="also time the driver's imports and Ray's start-up and shutdown")
    p.add_argument("--no-studies", action="store_true", help="skip the end-to-end studies")
    args = p.parse_args()

    print(load_line(), flush=True)
    if args.driver:
        d = driver_per_trial(args.driver)
        print(f"driver, no training: {d['trials']} trials, {d['cpu_ms']:.1f} ms CPU and {d['wall_ms']:.1f} ms wall per trial, "
              f"{d['sql_writes']:.1f} SQL writes and {d['fsyncs']:.1f} journal fsyncs per trial", flush=True)
    if args.report:
        parts = report_sections(args.report)
        print(f"report of {args.report}: " + ", ".join(f"{n} {c:.2f}s CPU ({w:.2f}s wall)" for n, c, w in parts)
              + f"; total {sum(c for _, c, _ in parts):.2f}s CPU", flush=True)
    if args.imports:
        for module in ("audit.pipeline", "ray.tune", "audit.report.write"):
            c, w = import_seconds(module)
            print(f"import {module}: {c:.2f}s CPU ({w:.2f}s wall)", flush=True)
        up, down = ray_start_stop_s()
        print(f"local Ray: start-up {up:.1f}s, shutdown {down:.1f}s (wall)", flush=True)
    if args.no_studies:
        return
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
