"""``audit compare``: verdicts with their one-line explanation, and one clear error per bad input."""
from __future__ import annotations

import json

import pytest

from audit.cli import main
from audit.judge.claim import judge_claim


@pytest.mark.parametrize("runs,extra,verdict,phrase", [
    ("73.1,73.3,72.9,73.2,73.0", [], "REPRODUCED", "Reproduced: the mean of 5 runs"),
    ("71.5,71.8,71.6,71.9,71.7", [], "NOT REPRODUCED", "Not reproduced: the mean of 5 runs"),
    ("74.5,74.8,74.6,74.9,74.7", [], "EXCEEDED", "Exceeded: the mean of 5 runs"),
    # a claim of unstated runs is one run with our spread: its own noise keeps this undecided for good
    ("72.5, 73.4, 72.8", [], "INCONCLUSIVE", "the claim's own spread dominates"),
    ("72.5, 73.4, 72.8", ["--claim-noise", "exact"], "INCONCLUSIVE", "runs at this spread would decide it"),
])
def test_verdicts(capsys, runs, extra, verdict, phrase):
    assert main(["compare", "--claimed", "73.2", "--runs", runs, *extra]) == 0
    out = capsys.readouterr().out
    assert verdict in out and phrase in out
    noise = "exact" if extra else "shared"
    v = judge_claim(73.2, [float(r) for r in runs.split(",")], noise=noise)
    assert v.explanation in out.splitlines()  # the whole explanation, on one line
    assert "claim modelled as" in out and ("taken as exact" if extra else "a single run") in out


def test_best_of_k_seeds(capsys):
    assert main(["compare", "--claimed", "73.6", "--runs", "73.1,72.8,73.3,73.0", "--claimed-runs", "5",
                 "--selection", "best", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["statistic"] == "best" and "the best of 5 seeds" in got["model"]
    assert got["diff"] > got["raw_diff"]  # a best of 5 seeds is expected above its method's mean


def test_json_output(capsys):
    assert main(["compare", "--claimed", "73.2", "--runs", "72.5,73.4,72.8", "--claimed-std", "0.3",
                 "--claimed-runs", "5", "--margin", "0.4", "--alpha", "0.1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["verdict"] == "INCONCLUSIVE" and got["noise"] == "shared" and "stated std" in got["model"]
    assert got["margin"] == 0.4 and got["alpha"] == 0.1 and got["n"] == 3
    assert got["ci_level"] == pytest.approx(0.8) and "\n" not in got["explanation"]


def test_claimed_runs_without_std_is_allowed(capsys):
    assert main(["compare", "--claimed", "73.2", "--claimed-runs", "5", "--runs", "73.1,73.3,72.9,73.2,73.0"]) == 0
    assert "no spread given" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--claimed", "73.2", "--runs", ""], "no runs given"),
    (["--claimed", "73.2", "--runs", " , "], "no runs given"),
    (["--claimed", "73.2", "--runs", "73.1,abc"], "--runs entry 2 must be an accuracy in percent between 0 and 100"),
    (["--claimed", "73.2", "--runs", "73.1,,72.9"], "empty entry at position 2"),
    (["--claimed", "73.2", "--runs", "73.1,nan"], "--runs entry 2 must be an accuracy in percent"),
    (["--claimed", "high", "--runs", "73.1,72.9"], "--claimed must be an accuracy in percent"),
    (["--claimed", "176.9", "--runs", "73.1,72.9"], "--claimed must be an accuracy in percent between 0 and 100; got '176.9'"),
    (["--claimed", "73.2", "--runs", "73.1,172.9"], "--runs entry 2 must be an accuracy in percent between 0 and 100"),
    # negative numbers as a user types them: the range error, not argparse's "expected one argument"
    (["--claimed", "73.2", "--runs", "-1,72.9"], "--runs entry 1 must be an accuracy in percent between 0 and 100"),
    (["--claimed", "-73.2", "--runs", "73.1,72.9"], "--claimed must be an accuracy in percent between 0 and 100"),
    (["--claimed", "73.2", "--runs", "-.5"], "--runs entry 1 must be an accuracy"),
    (["--claimed", "73.2", "--runs", "0.731,0.729"], "accuracies mix percent and fractions (0.731, 0.729 look like"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--selection", "best"], "--selection best needs --claimed-runs K"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claim-noise", "welch"], "--claim-noise welch needs --claimed-std"),
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-std", "0.2", "--claimed-runs", "5", "--selection",
      "median", "--claim-noise", "welch"], "--claim-noise welch judges a mean of runs"),
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
    (["--claimed", "73.2", "--runs", "73.1,72.9", "--claimed-std", "-.3", "--claimed-runs", "5"],
     "--claimed-std must be a non-negative number"),
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
