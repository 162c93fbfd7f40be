"""``audit compare``: verdicts with their one-line explanation, and one clear error per bad input."""
from __future__ import annotations

import json

import pytest

from audit.cli import main
from audit.judge.claim import judge_claim


@pytest.mark.parametrize("runs,verdict,phrase", [
    ("73.1,73.3,72.9,73.2,73.0", "REPRODUCED", "Reproduced: the mean of 5 runs"),
    ("71.5,71.8,71.6,71.9,71.7", "NOT REPRODUCED", "Not reproduced: the mean of 5 runs"),
    ("74.5,74.8,74.6,74.9,74.7", "EXCEEDED", "Exceeded: the mean of 5 runs"),
    ("72.5, 73.4, 72.8", "INCONCLUSIVE", "runs at this spread would decide it"),
])
def test_verdicts(capsys, runs, verdict, phrase):
    assert main(["compare", "--claimed", "73.2", "--runs", runs]) == 0
    out = capsys.readouterr().out
    assert verdict in out and phrase in out
    full = judge_claim(73.2, [float(r) for r in runs.split(",")]).explanation
    assert full in out.splitlines()  # the whole explanation, on one line


def test_json_output(capsys):
    assert main(["compare", "--claimed", "73.2", "--runs", "72.5,73.4,72.8", "--claimed-std", "0.3",
                 "--claimed-runs", "5", "--margin", "0.4", "--alpha", "0.1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["verdict"] == "INCONCLUSIVE" and got["test"].startswith("Welch")
    assert got["margin"] == 0.4 and got["alpha"] == 0.1 and got["n"] == 3
    assert got["ci_level"] == pytest.approx(0.8) and "\n" not in got["explanation"]


def test_claimed_runs_without_std_is_allowed(capsys):
    assert main(["compare", "--claimed", "73.2", "--claimed-runs", "5", "--runs", "73.1,73.3,72.9,73.2,73.0"]) == 0
    assert "no spread given" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--claimed", "73.2", "--runs", ""], "no runs given"),
    (["--claimed", "73.2", "--runs", " , "], "no runs given"),
    (["--claimed", "73.2", "--runs", "73.1,abc"], "--runs entry 2 must be a finite number"),
    (["--claimed", "73.2", "--runs", "73.1,,72.9"], "empty entry at position 2"),
    (["--claimed", "73.2", "--runs", "73.1,nan"], "--runs entry 2 must be a finite number"),
    (["--claimed", "high", "--runs", "73.1,72.9"], "--claimed must be a finite number"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-std", "-0.3", "--claimed-runs", "5"],
     "--claimed-std must be a non-negative number"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-std", "wide", "--claimed-runs", "5"],
     "--claimed-std must be a non-negative number"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-std", "0.3"], "--claimed-std needs --claimed-runs"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-std", "0.3", "--claimed-runs", "1"],
     "--claimed-std needs --claimed-runs K with K >= 2"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-runs", "2.5"], "--claimed-runs must be a whole number"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-runs", "0"], "--claimed-runs must be at least 1"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--margin", "0"], "--margin must be a positive number"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--margin", "-1"], "--margin must be a positive number"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--alpha", "0.7"], "--alpha must be a level between 0 and 0.5"),
    (["--claimed", "0.732", "--runs", "0.731,0.729"], "look like fractions"),
])
def test_bad_input_is_one_clear_line(capsys, args, message):
    assert main(["compare", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("audit: error: ") and captured.err.count("\n") == 1
    assert message in captured.err


def test_missing_runs_option_exits_2(capsys):
    assert main(["compare", "--claimed", "73.2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--runs" in err
