"""Equal budgets: results made under different budgets are refused with a clear message, or compared
with a warning when the user says so; every run's measured budget is in results.csv."""
from __future__ import annotations

import json
import tomllib

import pandas as pd
import pytest
import tomli_w
from _procs import teachers

from audit.budget import BUDGET_COLUMNS, check_equal
from audit.cli import main
from audit.errors import AuditError
from audit.study import DEFAULT_RECIPE, Study


def _rec(method: str, budget_hash: str, epochs: int = 8) -> dict:
    return {"method": method, "phase": "search", "status": "ok", "budget_hash": budget_hash, "epochs": epochs}


def test_mixed_budgets_are_refused_with_a_clear_message():
    records = [_rec("nokd", "aaaa"), _rec("kd", "aaaa"), _rec("dkd", "bbbb"), _rec("dkd", "aaaa")]
    with pytest.raises(AuditError) as err:
        check_equal(records)
    message = str(err.value)
    assert "2 different budgets" in message and "refusing to compare" in message
    assert "dkd: aaaa, bbbb" in message and "kd: aaaa" in message  # says which method ran under which
    assert "--allow-unequal-budgets" in message  # and how to compare anyway


def test_mixed_budgets_are_compared_with_a_warning_when_allowed():
    warnings = check_equal([_rec("nokd", "aaaa"), _rec("dkd", "bbbb")], allow_unequal=True)
    assert len(warnings) == 1 and warnings[0].startswith("UNEQUAL BUDGETS") and "compared anyway" in warnings[0]


def test_equal_budgets_pass_and_extra_epochs_are_stated():
    assert check_equal([_rec("nokd", "aaaa"), _rec("kd", "aaaa")]) == []
    warnings = check_equal([_rec("nokd", "aaaa"), _rec("fsp", "aaaa", epochs=10)])
    assert warnings == ["fsp trained for 10 epochs against 8 for others (paper protocol: more compute)"]


def test_budget_hash_covers_the_budget_only():
    base = Study(name="h", methods=["kd"], trials=3)
    assert Study(name="other", methods=["dkd"], trials=3, address="auto", storage="sqlite:///x").budget_hash() == base.budget_hash()
    assert Study(name="h", methods=["kd"], trials=4).budget_hash() != base.budget_hash()
    assert Study(name="h", methods=["kd"], trials=3, max_concurrent=2).budget_hash() != base.budget_hash()
    # Stored and read back, a study keeps its hash (resume compares against it).
    assert Study.from_dict(tomllib.loads(tomli_w.dumps(base.to_dict()))).budget_hash() == base.budget_hash()


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, teacher_cache):
    out = tmp_path_factory.mktemp("budget")
    code = main(["run", "--method", "kd", "--trials", "1", "--seeds", "1", "--epochs", "1", "--backend", "local",
                 "--out", str(out), "--name", "b", "--cache-dir", str(teachers(teacher_cache))])
    assert code == 0
    return out / "b"


@pytest.mark.slow
def test_results_hold_every_runs_measured_budget(small_study, digits):
    results = pd.read_csv(small_study / "results.csv")
    assert set(BUDGET_COLUMNS) <= set(results.columns)
    assert len(results) == 4  # nokd and kd: one search trial and one confirmation run each
    for col in BUDGET_COLUMNS:
        assert (results[col] > 0).all(), col
    batch = DEFAULT_RECIPE.batch_size
    assert (results.epochs == 1).all()
    assert (results.steps == len(digits.train) // batch).all()  # near-equal batches covering the train split
    assert (results.images == results.epochs * len(digits.train)).all()
    # FLOPs are measured per image on a real step: KD's include the teacher's forward pass.
    per_image = (results.flops / results.images).groupby(results.method).agg(["min", "max"])
    assert (per_image["min"] == per_image["max"]).all() and per_image.loc["kd", "min"] > per_image.loc["nokd", "min"]
    study = Study.read(small_study / "study.toml")
    assert set(results.budget_hash) == {study.budget_hash()}


@pytest.mark.slow
def test_resume_refuses_a_changed_budget_unless_allowed(small_study, teacher_cache, capsys):
    toml = small_study / "study.toml"
    changed = tomllib.loads(toml.read_text())
    changed["trials"] = 2  # edited after the trials ran: a different budget
    toml.write_text(tomli_w.dumps(changed))
    journal_before = (small_study / "trials.jsonl").read_text()
    capsys.readouterr()

    assert main(["resume", str(small_study), "--cache-dir", str(teachers(teacher_cache))]) == 2
    err = capsys.readouterr().err
    assert "differs from the budget its finished runs used" in err and "--allow-unequal-budgets" in err
    assert (small_study / "trials.jsonl").read_text() == journal_before  # refused before anything ran

    assert main(["resume", str(small_study), "--cache-dir", str(teachers(teacher_cache)), "--allow-unequal-budgets"]) == 0
    out = capsys.readouterr().out
    assert "UNEQUAL BUDGETS" in out
    assert "UNEQUAL BUDGETS" in (small_study / "budget_warnings.txt").read_text()
    hashes = {json.loads(line)["budget_hash"] for line in (small_study / "trials.jsonl").read_text().splitlines()}
    assert len(hashes) == 2
