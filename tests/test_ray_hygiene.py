"""What a run on Ray leaves and says: a crashed trial's exception in the record under both backends;
the Ray processes a driver started end with it (the reaper); the tests' own Ray never joins a
cluster an earlier Ray left on the machine. The whole-study checks (a killed driver's Ray
processes gone, loopback only, Ray's output in ray.log) are in tests/test_reliability.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from audit import folder
from audit.engine.train import Recipe
from audit.pipeline import Paths, create
from audit.search.confirm import confirm
from audit.search.loop import search
from audit.search.searchers import crash_reason
from audit.study import Study

CRASH = "ValueError: method kd needs the weights of teacher resnet20"


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_a_crashed_trial_records_its_exception_type_and_message(tmp_path, digits, backend, request, capfd):
    """kd's runs are handed no teacher weights, so each raises inside the run: recorded as failed
    with the exception's type and message in search and confirmation alike, and the study goes on."""
    if backend == "ray":
        request.getfixturevalue("ray_session")
    capfd.readouterr()
    study = Study(name="crash", methods=["kd"], trials=1, seeds=[1], backend=backend, max_concurrent=1,
                  recipe=Recipe(epochs=1, batch_size=64, lr=0.1))
    d = create(study, Paths(tmp_path))
    search(study, d, digits, None)
    kd = [r for r in folder.read(d) if r["method"] == "kd"]
    assert [(r["status"], r["reason"]) for r in kd] == [("failed", CRASH)]
    assert [r["status"] for r in folder.read(d) if r["method"] == "nokd"] == ["ok"]  # the study went on
    confirm(study, d, digits, None)  # nothing to confirm for kd (no trial finished); nokd confirms
    assert [(r["method"], r["status"]) for r in folder.read(d) if r["phase"] == "confirm"] == [("nokd", "ok")]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Trial task failed" not in err, err[-3000:]


def test_a_confirmation_run_that_crashes_is_recorded(tmp_path, digits):
    from audit.search.backend import run_spec
    from audit.search.runs import guarded_run

    study = Study(name="c", methods=["kd"], trials=1, seeds=[1], backend="local")
    rec = guarded_run({"alpha": 0.5}, run_spec(study, "kd", 1), digits, None, None, None)
    assert rec["status"] == "failed" and rec["reason"] == CRASH and rec["seed"] == 1 and rec["wall_s"] >= 0


def test_a_lost_worker_is_recorded_by_its_error():
    import ray.exceptions

    class Trial:  # what Tune hands the registry: the error it keeps for a trial
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        def get_pickled_error(self) -> Exception | None:
            return self.error

    assert crash_reason(Trial(ray.exceptions.RayTaskError("f", "tb", MemoryError("out of memory")))) == "MemoryError: out of memory"
    assert crash_reason(Trial(ray.exceptions.ActorDiedError())).startswith(
        "ActorDiedError: The actor died unexpectedly before finishing this task.")
    assert crash_reason(Trial(None)) is None and crash_reason(None) is None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_reaper_ends_what_the_driver_started_when_the_driver_is_killed(tmp_path):
    """A stand-in driver starts a stand-in Ray process, which starts a child that ignores SIGTERM
    (as Ray's agents outlive their raylet); the driver is killed with SIGKILL; the reaper ends
    both, and leaves a process it was not given alone."""
    pids = tmp_path / "pids"
    driver = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys, time
ray = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 300 & echo $! > {pids}; wait"])
subprocess.Popen([sys.executable, "-m", "audit.search.reaper", str(__import__("os").getpid()), str(ray.pid)],
                 start_new_session=True)
time.sleep(300)
"""], start_new_session=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pids.read_text())
        ray = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the child's parent
        time.sleep(2)  # the reaper has looked at the tree at least once
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 30
        while (_alive(ray) or _alive(child)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(ray) and not _alive(child)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_the_tests_ray_never_joins_a_cluster_an_earlier_ray_left_an_address_of(tmp_path):
    """With Ray's ``ray_current_cluster`` file naming a cluster that is gone (left by an earlier
    `ray start`), the session's Ray (tests/conftest.py, as `audit run`) still starts its own."""
    temp = Path(tempfile.mkdtemp(prefix="kdrt", dir="/tmp"))  # short: Ray's socket paths must stay under 107 bytes
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
        env = {**os.environ, "RAY_TMPDIR": str(temp)}
        env.pop("RAY_ADDRESS", None)
        code = ("import ray; from audit.search.backend import start_local_ray; start_local_ray(num_cpus=2); "
                "print('CPUS', ray.cluster_resources()['CPU']); ray.shutdown()")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "CPUS 2.0" in done.stdout, done.stderr[-3000:]
        assert "start_local_ray(num_cpus=2)" in (Path(__file__).parent / "conftest.py").read_text()
    finally:
        subprocess.run(["rm", "-rf", str(temp)], check=False)
