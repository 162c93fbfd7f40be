"""The console script exits without the interpreter's teardown: its output, its exit code and its
exit handlers must be what a normal exit gives."""
from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import atexit, sys
atexit.register(lambda: print("exit handler ran", flush=False))
sys.argv = ["audit", *sys.argv[1:]]
from audit.cli import run
run()
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_a_command_prints_everything_runs_its_exit_handlers_and_returns_its_code():
    done = _run("methods")
    assert done.returncode == 0, done.stderr
    assert "feature_kd" in done.stdout and "nokd" in done.stdout  # the whole table, flushed
    assert done.stdout.rstrip().endswith("exit handler ran")  # handlers run, their unflushed output too


def test_bad_input_still_exits_2_with_one_line():
    done = _run("run", "--method", "no_such_method")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no_such_method" in done.stderr
    assert "exit handler ran" in done.stdout
