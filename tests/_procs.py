"""Helpers for the tests that run ``audit`` as a user does: in subprocesses, against real services
(a Ray cluster, a PostgreSQL server), then read what the study folder and the storage hold."""
from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from audit import folder as audit_journal

journal = audit_journal.read  # the tests read a study's journal as the product does (torn lines skipped)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def teachers(teacher_cache: Path) -> Path:
    """The session's teacher cache; KD_AUDIT_TEST_TEACHERS points at a warm one when iterating
    locally (training the teacher takes minutes on a loaded 2-core machine)."""
    return Path(os.environ.get("KD_AUDIT_TEST_TEACHERS") or teacher_cache)


def audit(*args: str) -> list[str]:
    return [sys.executable, "-m", "audit.cli", *args]


# Set in this process by the session's ray.init: a user's shell does not hold them, and with
# RAY_AUTH_MODE set Ray starts without printing its token banner.
_SET_BY_RAY_INIT = ("RAY_AUTH_MODE", "RAY_ADDRESS")


def user_env() -> dict[str, str]:
    """The environment a user's shell gives ``audit``: this one without what ray.init added."""
    return {k: v for k, v in os.environ.items() if k not in _SET_BY_RAY_INIT}


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """A process in its own process group (so it and everything it starts can be killed at once),
    its output in ``log``; in a user's environment unless ``env`` is given."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=user_env() if env is None else env, start_new_session=True)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def wait_for(what: str, ready: Callable[[], bool], timeout: float, procs: tuple = (), logs: tuple = ()) -> None:
    """Poll ``ready`` until true; fail early (with the logs) when a watched process exits first."""
    deadline = time.monotonic() + timeout
    while not ready():
        for p in procs:
            if p.poll() is not None and not ready():
                raise AssertionError(f"{what}: process exited with {p.returncode} first\n{tails(logs)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f}s\n{tails(logs)}")
        time.sleep(0.5)


def tails(logs: tuple, n: int = 4000) -> str:
    return "\n".join(f"--- {p}\n{Path(p).read_text(errors='replace')[-n:]}" for p in logs if Path(p).exists())


def optuna_states(storage: "str | optuna.storages.BaseStorage", study_name: str) -> collections.Counter:
    """Trial states of one Optuna study; cancelled trials (user attr ``cancelled``) as 'CANCELLED'."""
    ostudy = optuna.load_study(study_name=study_name, storage=storage)
    return collections.Counter(
        "CANCELLED" if t.user_attrs.get("cancelled") else t.state.name for t in ostudy.get_trials(deepcopy=False)
    )


def complete_numbers(storage: str, study_name: str) -> set[int]:
    ostudy = optuna.load_study(study_name=study_name, storage=storage)
    return {t.number for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
