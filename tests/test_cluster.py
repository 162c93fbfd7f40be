"""A real Ray cluster on loopback: a head node and a second worker node started with ``ray start``
(token authentication on, as a user would run it), and ``audit run --address`` driving a small
study on it. Every trial must have run, on both nodes, and be recorded in the journal, in
results.csv and in the Optuna storage."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile

import pandas as pd
import pytest
from _procs import (
    audit,
    free_port,
    journal,
    kill_group,
    optuna_states,
    start,
    tails,
    teachers,
    wait_for,
)

from audit.search.storage import open_storage

pytestmark = pytest.mark.slow

TRIALS = 2  # per method; nokd and kd are always in a study, so 4 trials over 2 one-CPU nodes


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """(address, env) of a two-node cluster; the env carries the cluster's auth token."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    if shutil.which("ray") is None:
        pytest.skip("the `ray` command is not on PATH")
    port = free_port()
    # Short on purpose: Ray's Unix sockets live under it and socket paths are limited to 107 bytes.
    temp = tempfile.mkdtemp(prefix="kdrc", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Every node and the driver must share the token: RAY_AUTH_TOKEN (or a file in RAY_AUTH_TOKEN_PATH).
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    logs = (tmp_path / "head.log", tmp_path / "worker.log")
    nodes: list[subprocess.Popen] = []
    try:
        # --block keeps each node's processes in one process group that the finaliser kills: `ray stop`
        # would stop every Ray process on the machine, other users' included.
        nodes.append(start(["ray", "start", "--head", f"--port={port}", "--include-dashboard=false",
                            f"--temp-dir={temp}", *common], logs[0], env))
        started = lambda log: "Ray runtime started" in log.read_text(errors="replace")  # noqa: E731
        wait_for("head node", lambda: started(logs[0]), 180, procs=nodes, logs=logs)
        nodes.append(start(["ray", "start", f"--address=127.0.0.1:{port}", *common], logs[1], env))
        wait_for("worker node", lambda: started(logs[1]), 180, procs=nodes, logs=logs)
        yield f"127.0.0.1:{port}", env, logs
    finally:
        for node in reversed(nodes):
            kill_group(node)
        shutil.rmtree(temp, ignore_errors=True)


def test_study_on_a_two_node_cluster(tmp_path, ray_cluster, teacher_cache):
    address, env, node_logs = ray_cluster
    out, log = tmp_path / "reports", tmp_path / "driver.log"
    driver = subprocess.run(
        audit("run", "--method", "kd", "--trials", str(TRIALS), "--seeds", "1", "--epochs", "1",
              "--address", address, "--cpus-per-trial", "1", "--out", str(out), "--name", "cl",
              "--cache-dir", str(teachers(teacher_cache))),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=540,
    )
    log.write_text(driver.stdout)
    assert driver.returncode == 0, driver.stdout[-6000:] + tails(node_logs)

    folder = out / "cl"
    records = journal(folder)
    search = [r for r in records if r["phase"] == "search"]
    results = pd.read_csv(folder / "results.csv")
    storage = open_storage(None, folder)
    for method in ("nokd", "kd"):
        mine = [r for r in search if r["method"] == method]
        assert len(mine) == TRIALS and all(r["status"] == "ok" for r in mine), mine
        assert sorted(r["optuna_trial"] for r in mine) == list(range(TRIALS))
        assert all(r["config"] for r in mine if method == "kd")  # parameters survive Tune's result flattening
        rows = results[(results.method == method) & (results.phase == "search")]
        assert len(rows) == TRIALS and (rows.status == "ok").all()
        assert optuna_states(storage, f"cl.{method}") == {"COMPLETE": TRIALS}
        assert len(results[(results.method == method) & (results.phase == "confirm")]) == 1
    # Both one-CPU nodes did work. Tune may reuse one node's actor for short trials, but the two
    # confirmation runs are submitted at once and each needs a whole node.
    assert all(r.get("node_id") for r in records), records
    nodes = {r["node_id"] for r in records}
    assert len(nodes) == 2, [(r["phase"], r["method"], r["node_id"]) for r in records]


def test_a_driver_without_the_token_is_refused_before_any_work(tmp_path, ray_cluster, teacher_cache):
    address, env, _ = ray_cluster
    wrong = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    driver = subprocess.run(
        audit("run", "--method", "kd", "--trials", "1", "--seeds", "1", "--epochs", "1", "--address", address,
              "--out", str(tmp_path / "reports"), "--name", "nope", "--cache-dir", str(teachers(teacher_cache))),
        env=wrong, capture_output=True, text=True, timeout=300,
    )
    assert driver.returncode == 2, driver.stdout[-3000:] + driver.stderr[-3000:]
    error = driver.stderr.strip().splitlines()[-1]
    assert error.startswith("audit: error: cannot join the Ray cluster at") and "RAY_AUTH_TOKEN" in error
    assert not (tmp_path / "reports").exists()  # refused before the study folder or the teacher
