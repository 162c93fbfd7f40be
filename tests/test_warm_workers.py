"""The confirmation starts on warm Ray workers: the workers ``warm_workers`` started (torch and
the methods imported) outlive a Tune search and take the confirmation's tasks, instead of fresh
workers that spend seconds importing torch first."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = """
import os, time
import ray
from ray import tune
from audit.search.backend import start_local_ray, warm_workers
start_local_ray(num_cpus=2)
warm = set(ray.get(warm_workers(2, ["kd"])))
assert len(warm) == 2, warm
time.sleep(2)  # Ray ends idle workers beyond its soft limit after a second

def trial(config):
    tune.report({"pid": os.getpid()})

# A search as the study runs it: Tune's actors hold the CPUs, then end.
tuner = tune.Tuner(tune.with_resources(trial, {"cpu": 1}), param_space={"x": tune.grid_search([0, 1, 2])},
                   tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
                   run_config=tune.RunConfig(storage_path=os.environ["STORE"], verbose=0))
actors = {r.metrics["pid"] for r in tuner.fit()}

@ray.remote(num_cpus=1)
def run():
    import sys
    return os.getpid(), "torch" in sys.modules

confirm = ray.get([run.remote() for _ in range(2)])
print("WARM", sorted(warm), "ACTORS", sorted(actors), "CONFIRM", confirm)
assert not actors & warm, "Tune's actors took the warm workers"
assert {pid for pid, _ in confirm} <= warm, "the confirmation did not run on the warm workers"
assert all(has_torch for _, has_torch in confirm)
ray.shutdown()
"""


@pytest.mark.slow
def test_the_confirmation_runs_on_the_workers_warmed_before_the_search(tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="kdww", dir="/tmp"))  # short: Ray's socket paths must stay under 107 bytes
    try:
        env = {**os.environ, "RAY_TMPDIR": str(temp), "STORE": str(tmp_path / "tune")}
        for key in ("RAY_ADDRESS", "RAY_AUTH_MODE"):  # this process's Ray is not the one under test
            env.pop(key, None)
        done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert "CONFIRM" in done.stdout
    finally:
        subprocess.run(["rm", "-rf", str(temp)], check=False)
