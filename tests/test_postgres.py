"""A study on a real PostgreSQL server started by the test, driven by two ``audit run`` processes at
once that share it (as two machines would): each method ends with exactly its budget of completed
trials, both drivers confirm the same best configuration, and the password is never written to
any file or output."""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _procs import audit, free_port, journal, kill_group, optuna_states, start, teachers

pytestmark = pytest.mark.slow

TRIALS = 3  # per method, shared by the two drivers
METHODS = ("nokd", "kd")


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[str, str]]:
    """(URL with password, password) of a fresh server on 127.0.0.1 with password authentication,
    shared by the module's tests: each uses its own study names or database, so none sees another's."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql; CI installs it)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
    # Outside pytest's private (0700, root-owned) tmp folders, so that the server's user can use it.
    base = Path(tempfile.mkdtemp(prefix="kdpg", dir="/tmp"))
    data, password, port = base / "data", f"pw{secrets.token_hex(12)}", free_port()
    (base / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(base / "pwfile", "postgres")
    run = lambda cmd: subprocess.run(_as_server_user(cmd), check=True, capture_output=True, text=True, timeout=300)  # noqa: E731
    server = None
    try:
        run([initdb, "-D", str(data), "-U", "kdaudit", "--auth=scram-sha-256", f"--pwfile={base / 'pwfile'}", "-E", "UTF8"])
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        run([pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-o", opts, "-w", "-t", "120", "start"])
        server = data
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="kdaudit", password=password, dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE optuna")
        conn.close()
        yield f"postgresql://kdaudit:{password}@127.0.0.1:{port}/optuna", password
    finally:
        if server is not None:
            subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def test_two_drivers_share_a_postgresql_study(tmp_path, postgres, teacher_cache, capfd):
    url, password = postgres
    cache = str(teachers(teacher_cache))
    drivers, logs = [], []
    for who in ("a", "b"):
        logs.append(tmp_path / f"driver-{who}.log")
        drivers.append(start(audit("run", "--method", "kd", "--trials", str(TRIALS), "--seeds", "1", "--epochs", "1",
                                   "--backend", "local", "--storage", url, "--out", str(tmp_path / who),
                                   "--name", "pg", "--cache-dir", cache), logs[-1]))
    try:
        for d, log in zip(drivers, logs):
            assert d.wait(timeout=540) == 0, log.read_text()[-6000:]
    finally:
        for d in drivers:
            kill_group(d)

    folders = [tmp_path / who / "pg" for who in ("a", "b")]
    records = [journal(f) for f in folders]
    db = url.replace("postgresql://", "postgresql+psycopg2://")  # the driver the test extras install
    for method in METHODS:
        ostudy = optuna.load_study(study_name=f"pg.{method}", storage=db)
        states = optuna_states(db, f"pg.{method}")
        # Exactly the budget completed; every other trial was cancelled before it ran (FAIL + attr).
        assert states["COMPLETE"] == TRIALS and set(states) <= {"COMPLETE", "CANCELLED"}, states
        assert all(t.state.name == "FAIL" for t in ostudy.trials if t.user_attrs.get("cancelled"))
        # The two journals split the budget between them: each trial run by exactly one driver.
        numbers = [r["optuna_trial"] for recs in records for r in recs if r["method"] == method and r["phase"] == "search"]
        assert sorted(numbers) == sorted(t.number for t in ostudy.trials if t.state.name == "COMPLETE")
        # Both drivers waited for the whole budget, so they confirmed the same best configuration.
        confirmed = [[r["config"] for r in recs if r["method"] == method and r["phase"] == "confirm"] for recs in records]
        assert confirmed[0] == confirmed[1] and len(confirmed[0]) == 1
    assert all(r["phase"] == "confirm" or r["status"] == "ok" for recs in records for r in recs)

    # Without the password, resume says how to give it; with it, it finds nothing left to run. In this
    # process: `audit resume` as a process is tested in tests/test_reliability.py.
    from audit.cli import main

    capfd.readouterr()
    assert main(["resume", str(folders[0]), "--cache-dir", cache]) == 2
    assert "give it again with --storage" in capfd.readouterr().err
    code = main(["resume", str(folders[0]), "--storage", url, "--cache-dir", cache])
    said = capfd.readouterr()
    assert code == 0, said.out[-4000:] + said.err[-4000:]
    assert password not in said.out + said.err
    assert len(journal(folders[0])) == len(records[0])

    assert "kdaudit:***@127.0.0.1" in (folders[0] / "study.toml").read_text()
    written = [p for f in (tmp_path / "a", tmp_path / "b") for p in f.rglob("*") if p.is_file()] + logs
    assert len(written) > 10
    for path in written:
        assert password.encode() not in path.read_bytes(), f"the storage password is written in {path}"


def test_no_secret_in_any_file_a_ray_study_writes(tmp_path, postgres, teacher_cache, ray_session, capfd):
    """Under Ray, Tune pickles its searcher into the study folder (ray/search-*/tuner.pkl): the
    storage URL with its password must not be there, nor anywhere else the study writes. In this
    process, on the session's Ray (what is written does not depend on who started Ray; real
    `audit run` processes on this server are the two drivers above)."""
    from audit.cli import main

    url, password = postgres
    out = tmp_path / "r"
    code = main(["run", "--method", "kd", "--trials", "1", "--seeds", "1", "--epochs", "1", "--backend", "ray",
                 "--max-concurrent", "1", "--storage", url, "--out", str(out), "--name", "pgray",
                 "--cache-dir", str(teachers(teacher_cache))])
    said = capfd.readouterr()
    assert code == 0, said.out[-4000:] + said.err[-4000:]
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "tuner.pkl" for p in written), written
    for path in written:
        assert password.encode() not in path.read_bytes(), f"the storage password is written in {path}"
    assert password not in said.out + said.err
    assert stat.S_IMODE((out / "pgray" / "ray").stat().st_mode) == 0o700  # Tune's state: the driver's only


def test_a_wrong_password_is_one_line_before_any_folder(tmp_path, postgres, capfd):
    from audit.cli import main

    url, password = postgres
    wrong = url.replace(password, "not-the-password")
    out = tmp_path / "r"
    capfd.readouterr()
    assert main(["run", "--method", "kd", "--trials", "1", "--backend", "local", "--storage", wrong, "--out", str(out)]) == 2
    said = capfd.readouterr()
    err = said.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("audit: error: cannot open Optuna storage 'postgresql://kdaudit:***@127.0.0.1")
    assert "password authentication failed" in err[0] and "not-the-password" not in said.out + said.err
    assert not out.exists() or not any(out.iterdir())


def _open_storage(url: str) -> str:
    from audit.search.storage import open_storage

    open_storage(url, Path("."))
    return "ok"


def test_drivers_creating_the_schema_at_once_all_open_it(postgres):
    """Optuna creates its tables on first use; several drivers doing that at the same moment on an
    empty database collide inside PostgreSQL, and each must still open the storage."""
    import concurrent.futures
    import multiprocessing

    import psycopg2

    url, password = postgres
    conn = psycopg2.connect(url.replace("/optuna", "/postgres"))
    conn.autocommit = True
    conn.cursor().execute("CREATE DATABASE fresh")
    conn.close()
    fresh = url.replace("/optuna", "/fresh")
    with concurrent.futures.ProcessPoolExecutor(6, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(_open_storage, [fresh] * 6)) == ["ok"] * 6
