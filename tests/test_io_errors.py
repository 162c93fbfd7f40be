"""File-system and storage problems are one line naming the path or storage and the cause, found
before any work where they can be (no half-made study folder), and a full disk mid-study says so
and is resumable. Read-only and full file systems are real small tmpfs mounts where this process
may mount them (root in a container, CI), else those tests are skipped; /dev/full stands in for a
full disk everywhere."""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from _procs import journal, teachers

from audit.cli import main
from audit.engine.train import Recipe
from audit.errors import io_problem

SMALL = ["--method", "kd", "--trials", "2", "--seeds", "1", "--epochs", "1"]


@pytest.fixture
def mount(tmp_path):
    """``mount(path, options)``: a tmpfs there, unmounted after the test; skips where not allowed."""
    mounted: list[Path] = []

    def make(path: Path, options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _one_line(capsys) -> str:  # noqa: ANN001
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("audit: error: "), err
    return err


def test_a_read_only_out_is_named_before_any_work(tmp_path, capsys, mount):
    ro = mount(tmp_path / "ro", "size=1m,ro")
    assert main(["run", *SMALL, "--backend", "local", "--out", str(ro / "reports")]) == 2
    err = _one_line(capsys)
    assert f"--out {str(ro / 'reports')!r} cannot be written: Read-only file system" in err


def test_an_out_that_is_a_file_is_named(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["run", *SMALL, "--backend", "local", "--out", str(tmp_path / "file")]) == 2
    assert f"--out {str(tmp_path / 'file')!r} is a file, not a folder" in _one_line(capsys)
    assert main(["run", *SMALL, "--backend", "local", "--out", str(tmp_path / "file" / "below")]) == 2
    assert "cannot be made" in _one_line(capsys)


def test_a_read_only_teacher_cache_is_named_before_the_teacher_trains(tmp_path, capsys, mount):
    ro = mount(tmp_path / "ro", "size=1m,ro")
    out = tmp_path / "reports"
    assert main(["run", *SMALL, "--backend", "local", "--out", str(out), "--cache-dir", str(ro / "teachers")]) == 2
    err = _one_line(capsys)
    assert f"the teacher cache (--cache-dir) {str(ro / 'teachers')!r} cannot be written: Read-only file system" in err
    assert not out.exists() or not any(out.iterdir())


def test_a_bad_storage_url_is_named_before_the_folder(tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["run", *SMALL, "--backend", "local", "--storage", "nosuch://host/db", "--out", str(out)]) == 2
    assert "cannot open Optuna storage 'nosuch://host/db': NoSuchModuleError" in _one_line(capsys)
    assert main(["run", *SMALL, "--backend", "local", "--storage", f"sqlite:///{tmp_path}/no/such/dir/x.db", "--out", str(out)]) == 2
    assert "the Optuna storage's file cannot be opened" in _one_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_a_teacher_cache_entry_holding_no_object_is_retrained(tmp_path, digits, capsys):
    from audit.engine.teachers import get_teacher

    quick = Recipe(epochs=1, batch_size=128, lr=0.1)
    first = get_teacher(digits, "resnet8", recipe=quick, cache_dir=tmp_path)
    meta = next(tmp_path.glob("*.json"))
    meta.write_text("[]")
    again = get_teacher(digits, "resnet8", recipe=quick, cache_dir=tmp_path)
    assert not again.from_cache and "its provenance file holds no JSON object); retraining" in capsys.readouterr().out
    assert json.loads(meta.read_text())["sha256"] == first.meta["sha256"]  # the same weights, written again


def test_a_full_storage_is_said_so():
    con = sqlite3.connect(":memory:")
    con.execute("PRAGMA max_page_count = 2")
    try:
        con.execute("CREATE TABLE t (x TEXT)")
        con.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    except sqlite3.OperationalError as exc:
        try:
            raise RuntimeError("Optuna's own words") from exc
        except RuntimeError as wrapped:
            assert io_problem(wrapped) == "the disk is full (writing the Optuna storage)"
    else:
        pytest.fail("SQLite did not fill up")
    err = OSError(28, "No space left on device", "/x/trials.jsonl")
    assert io_problem(err) == "the disk is full writing '/x/trials.jsonl' (No space left on device)"
    assert io_problem(ValueError("a bug")) is None


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_full_disk_mid_study_says_so_and_is_resumable(tmp_path, capsys, teacher_cache, backend, request, monkeypatch):
    """The journal's disk fills after the first search trial (its write fails as on a full disk):
    one line naming it and how to go on, the study folder kept; once there is room, resume ends
    the study exactly at budget."""
    from audit import folder
    from audit.pipeline import Paths, create
    from audit.study import Study

    if backend == "ray":
        request.getfixturevalue("ray_session")
    study = Study(name="full", methods=["kd"], trials=1, seeds=[1], backend=backend, max_concurrent=1,
                  recipe=Recipe(epochs=1, batch_size=64, lr=0.1))
    d = create(study, Paths(tmp_path))
    append, written = folder.append, []

    def full_after_one(study_dir: Path, record: dict) -> None:
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(study_dir / folder.JOURNAL))
        append(study_dir, record)
        written.append(record)

    monkeypatch.setattr(folder, "append", full_after_one)
    cache = str(teachers(teacher_cache))
    assert main(["resume", str(d), "--cache-dir", cache]) == 2
    err = capsys.readouterr().err.strip()  # (Ray's start-up line, when the session's Ray starts in this test)
    assert err.splitlines()[-1:] == [f"audit: error: the disk is full writing {str(d / 'trials.jsonl')!r} (No space left on device); "
                                f"{d} keeps every run that finished: make room (or make it writable) and run `audit resume {d}`"]
    monkeypatch.setattr(folder, "append", append)  # room again
    assert main(["resume", str(d), "--cache-dir", cache]) == 0
    search = [r for r in journal(d) if r["phase"] == "search"]
    assert sorted((r["method"], r["trial"]) for r in search) == [("kd", 0), ("nokd", 0)]
    assert search[0] == written[0]


@pytest.mark.slow
def test_a_really_full_disk_during_the_report_is_resumable(tmp_path, capsys, teacher_cache, mount):
    out = mount(tmp_path / "small", "size=300k")
    cache = str(teachers(teacher_cache))
    assert main(["run", *SMALL, "--backend", "local", "--out", str(out), "--name", "f", "--cache-dir", cache]) == 2
    err = _one_line(capsys)
    assert "the disk is full" in err and f"run `audit resume {out / 'f'}`" in err
    subprocess.run(["mount", "-o", "remount,size=20m", str(out)], check=True)
    assert main(["resume", str(out / "f"), "--cache-dir", cache]) == 0
    assert (out / "f" / "index.html").exists() and (out / "f" / "summary.csv").exists()
