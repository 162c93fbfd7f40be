"""How much Ray's start slows the main job's teacher, and whether starting it first would help.

The pipeline trains the teacher in a thread while the main thread starts Ray (``start_backend``:
``ray.init``, Ray Tune's import, two warm workers) and imports the report's modules. This times
the default digits teacher (``resnet20``, 60 epochs, a fresh cache) in that arrangement and in
three others, each in a fresh process, the arrangements interleaved:

    alone    the teacher with nothing beside it
    beside   as the pipeline runs it (Ray's whole start beside the teacher)
    init     ``ray.init`` alone beside the teacher
    after    Ray's whole start first, then the teacher

and prints the median teacher time and the time Ray's start took in the main thread. Not a test:
the numbers depend on the machine and on what else runs on it (README, "Measured figures").

    python benchmarks/teacher_beside_ray.py [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ARRANGEMENTS = ("alone", "beside", "init", "after")


def _one(arrangement: str) -> None:
    """One arrangement in this process; prints its times as JSON."""
    import tempfile
    import threading
    import time
    from pathlib import Path

    import torch

    from audit.engine.data import load_splits
    from audit.engine.teachers import get_teacher
    from audit.search import backend
    from audit.study import Study

    torch.set_num_threads(os.cpu_count() or 1)
    splits = load_splits("digits", split_seed=0, val_fraction=0.2)
    study, folder, cache = Study(name="bench", methods=["feature_kd"]), Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    # torch.optim's first step imports torch._dynamo; the job's compute estimate pays it before the teacher
    m = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(torch.ones(1, 2)).sum().backward()
    opt.step()

    def start() -> None:
        if arrangement == "init":
            with backend.ray_log(folder):
                backend.ensure_ray(study)
        else:
            backend.start_backend(study, folder)
            import audit.report.write  # noqa: F401 - as the pipeline does beside the teacher

    out: dict[str, float] = {}
    if arrangement == "after":
        t = time.perf_counter()
        start()
        out["ray_s"] = time.perf_counter() - t

    def teacher() -> None:
        t = time.perf_counter()
        get_teacher(splits, "resnet20", cache_dir=cache)
        out["teacher_s"] = time.perf_counter() - t

    thread = threading.Thread(target=teacher)
    thread.start()
    if arrangement in ("beside", "init"):
        t = time.perf_counter()
        start()
        out["ray_s"] = time.perf_counter() - t
    thread.join()
    print(json.dumps(out), flush=True)
    os._exit(0)  # Ray's shutdown is not what is measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--one", choices=ARRANGEMENTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(args.one)
        return
    runs: dict[str, list[dict]] = {a: [] for a in ARRANGEMENTS}
    for _ in range(args.repeats):
        for a in ARRANGEMENTS:
            done = subprocess.run([sys.executable, __file__, "--one", a], capture_output=True, text=True, check=True)
            runs[a].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'arrangement':12s} {'teacher (s)':>12s} {'Ray start (s)':>14s}   (medians of {args.repeats})")
    for a, rs in runs.items():
        ray_s = [r["ray_s"] for r in rs if "ray_s" in r]
        ray_text = f"{statistics.median(ray_s):.1f}" if ray_s else "-"
        print(f"{a:12s} {statistics.median(r['teacher_s'] for r in rs):12.1f} {ray_text:>14s}")


if __name__ == "__main__":
    main()
