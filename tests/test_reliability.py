"""A resumed or shared study is the study that would have run uninterrupted (README, "Reliability").

Each test runs a tiny study (digits, 1 epoch, 3 trials of nokd and kd, 2 seeds) without
interruption, then the same study killed with SIGKILL at the points listed and resumed, or run by
two drivers sharing one storage, and compares the files: ``results.csv`` (every number, every
configuration, trial by trial; only the measured wall time may differ), ``curves.csv`` and
``summary.csv``. Under Ray it also checks that the killed driver's Ray processes end with it and
that its Ray instance listened on loopback only.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from _procs import (
    audit,
    journal,
    kill_group,
    optuna_states,
    start,
    tails,
    teachers,
    wait_for,
)

from audit.cli import main
from audit.search.storage import open_storage

pytestmark = pytest.mark.slow

SIZE = ["--method", "kd", "--trials", "3", "--seeds", "2", "--epochs", "1"]
METHODS = ("nokd", "kd")
TABLES = ("results.csv", "curves.csv", "summary.csv")


def _tables(study_dir: Path) -> dict[str, pd.DataFrame]:
    found = {name: pd.read_csv(study_dir / name) for name in TABLES}
    found["results.csv"] = found["results.csv"].drop(columns=["wall_s"])  # measured time: the one thing that differs
    return found


def assert_same_study(got: Path, want: Path) -> None:
    mine, theirs = _tables(got), _tables(want)
    for name in TABLES:
        pd.testing.assert_frame_equal(mine[name], theirs[name], check_exact=True, obj=f"{got.name}/{name}")


def _searched(study_dir: Path) -> int:
    return sum(r["phase"] == "search" for r in journal(study_dir))


def _confirmed(study_dir: Path) -> int:
    return sum(r["phase"] == "confirm" for r in journal(study_dir))


KILL_POINTS = {
    # (what is waited for, then SIGKILL): a point inside each phase of a study
    "search": lambda d: _searched(d) >= 2,
    "confirmation": lambda d: _confirmed(d) >= 1,
    "report": lambda d: (d / "results.csv").exists(),  # tables are written, the report is being drawn
}


def _kill_at(point: str, cmd: list[str], study_dir: Path, log: Path, *, driver_only: bool = False) -> subprocess.Popen:
    proc = start(cmd, log)
    try:
        wait_for(f"the {point} of {study_dir.name}", lambda: KILL_POINTS[point](study_dir), 480, procs=(proc,), logs=(log,))
        if driver_only:
            os.kill(proc.pid, signal.SIGKILL)  # the driver alone: what it started must end with it
            proc.wait(timeout=30)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, tails((log,))
    if point == "report":
        assert not (study_dir / "index.html").exists(), "killed too late: the report was already written"
    return proc


def _resume(study_dir: Path, cache: str, log: Path) -> None:
    done = subprocess.run(audit("resume", str(study_dir), "--cache-dir", cache), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=540)
    log.write_text(done.stdout)
    assert done.returncode == 0, done.stdout[-6000:]


def _budget_exact(study_dir: Path) -> None:
    """Exactly the budget of trials per method, none run twice, journal and Optuna agreeing."""
    storage = open_storage(None, study_dir)
    for method in METHODS:
        search = [r for r in journal(study_dir) if r["method"] == method and r["phase"] == "search"]
        assert sorted(r["trial"] for r in search) == [0, 1, 2], search
        states = optuna_states(storage, f"{study_dir.name}.{method}")
        assert states["RUNNING"] == 0 and states["COMPLETE"] + states["FAIL"] == 3, states


@pytest.fixture(scope="module")
def uninterrupted_local(tmp_path_factory, teacher_cache) -> Path:
    out = tmp_path_factory.mktemp("local")
    assert main(["run", *SIZE, "--backend", "local", "--out", str(out), "--name", "once",
                 "--cache-dir", str(teachers(teacher_cache))]) == 0
    return out / "once"


def test_killed_in_search_confirmation_and_report_then_resumed_equals_uninterrupted(tmp_path, teacher_cache,
                                                                                     uninterrupted_local):
    cache = str(teachers(teacher_cache))
    out, study_dir = tmp_path / "reports", tmp_path / "reports" / "killed"
    run = audit("run", *SIZE, "--backend", "local", "--out", str(out), "--name", "killed", "--cache-dir", cache)
    again = audit("resume", str(study_dir), "--cache-dir", cache)
    _kill_at("search", run, study_dir, tmp_path / "1.log")
    whole = [line for line in (study_dir / "trials.jsonl").read_text().splitlines(keepends=True) if line.endswith("\n")]
    _kill_at("confirmation", again, study_dir, tmp_path / "2.log")
    # Every whole line written before a kill is still there, in order: nothing finished is lost.
    assert (study_dir / "trials.jsonl").read_text().splitlines(keepends=True)[: len(whole)] == whole
    _kill_at("report", again, study_dir, tmp_path / "3.log")
    _resume(study_dir, cache, tmp_path / "4.log")

    _budget_exact(study_dir)
    assert_same_study(study_dir, uninterrupted_local)


def test_two_drivers_on_one_storage_run_the_study_one_driver_runs(tmp_path, teacher_cache, uninterrupted_local):
    """Two drivers at once on one SQLite storage, each with its own folder: together they run each
    place of the budget once, never one configuration twice, each configuration the one the single
    driver ran in that place; both confirm what the single driver confirmed, number for number."""
    cache, url = str(teachers(teacher_cache)), f"sqlite:///{tmp_path / 'shared.db'}"
    drivers, logs = [], []
    for who in ("a", "b"):
        logs.append(tmp_path / f"{who}.log")
        drivers.append(start(audit("run", *SIZE, "--backend", "local", "--storage", url, "--out", str(tmp_path / who),
                                   "--name", "shared", "--cache-dir", cache), logs[-1]))
    try:
        for d in drivers:
            assert d.wait(timeout=540) == 0, tails(tuple(logs))
    finally:
        for d in drivers:
            kill_group(d)

    single = pd.read_csv(uninterrupted_local / "results.csv")
    folders = [tmp_path / who / "shared" for who in ("a", "b")]
    for method in METHODS:
        search = [r for f in folders for r in journal(f) if r["method"] == method and r["phase"] == "search"]
        assert sorted(r["trial"] for r in search) == [0, 1, 2], search
        configs = [json.dumps(r["config"], sort_keys=True) for r in search]
        assert len(set(configs)) == len(configs), "a configuration ran twice"
        want = single[(single.method == method) & (single.phase == "search")]
        for r in search:
            row = want[want.trial == r["trial"]]
            assert {k: row[f"hp_{k}"].item() for k in r["config"]} == r["config"]
            assert row.val_acc_last.item() == r["val_acc_last"]
    for f in folders:
        mine = pd.read_csv(f / "results.csv")
        confirm = lambda df: df[df.phase == "confirm"].drop(columns=["wall_s"]).reset_index(drop=True)  # noqa: E731
        pd.testing.assert_frame_equal(confirm(mine), confirm(single), check_exact=True)
        cols = ["method", "runs", "test_mean", "test_std", "vs_nokd", "vs_kd", "best_config"]
        pd.testing.assert_frame_equal(pd.read_csv(f / "summary.csv")[cols],
                                      pd.read_csv(uninterrupted_local / "summary.csv")[cols], check_exact=True)


# ---------------------------------------------------------------------------------------------
# Ray, one trial at a time (with several at once the history each trial is asked with depends on timing)
# ---------------------------------------------------------------------------------------------


def _ray_processes(pgid: int) -> list[str]:
    """Live processes of a process group (the driver's Ray processes stay in its group)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    found.append(f"{entry} {Path(f'/proc/{entry}/cmdline').read_text().replace(chr(0), ' ')[:80]}")
            except (OSError, ValueError):
                continue
    return found


def _listening(pgid: int) -> list[str]:
    """Local addresses the group's processes listen on (TCP), from ss."""
    shown = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
    pids = {p.split()[0] for p in _ray_processes(pgid)}
    return [line.split()[3] for line in shown if any(f"pid={pid}," in line for pid in pids)]


def test_ray_killed_in_search_and_confirmation_then_resumed_equals_uninterrupted(tmp_path, teacher_cache, ray_session):
    cache = str(teachers(teacher_cache))
    ray_args = [*SIZE, "--backend", "ray", "--max-concurrent", "1", "--cpus-per-trial", "1"]
    assert main(["run", *ray_args, "--out", str(tmp_path / "once"), "--name", "once", "--cache-dir", cache]) == 0

    out, study_dir = tmp_path / "reports", tmp_path / "reports" / "killed"
    driver = start(audit("run", *ray_args, "--out", str(out), "--name", "killed", "--cache-dir", cache), tmp_path / "1.log")
    try:
        wait_for("a search trial", lambda: _searched(study_dir) >= 1, 480, procs=(driver,), logs=(tmp_path / "1.log",))
        addresses = _listening(driver.pid)
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as `kill -9` would
        driver.wait(timeout=30)
        left = lambda: _ray_processes(driver.pid)  # noqa: E731
        deadline = time.monotonic() + 60
        while left() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left(), f"Ray processes outlived their killed driver: {left()}"
    finally:
        kill_group(driver)
    assert addresses and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in addresses), addresses
    # What Ray prints goes to the study's ray.log, not to the terminal; Tune's state files are the driver's only.
    assert "Token authentication is enabled" in (study_dir / "ray.log").read_text()
    assert "Token authentication" not in (tmp_path / "1.log").read_text()
    assert stat.S_IMODE((study_dir / "ray").stat().st_mode) == 0o700

    _kill_at("confirmation", audit("resume", str(study_dir), "--cache-dir", cache), study_dir, tmp_path / "2.log",
             driver_only=True)
    _resume(study_dir, cache, tmp_path / "3.log")

    _budget_exact(study_dir)
    assert_same_study(study_dir, tmp_path / "once" / "once")
