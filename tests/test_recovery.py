"""Damaged state is detected and named, never a silent wrong result: an Optuna storage that lost what
the journal holds is rebuilt from the journal (the study folder's own Optuna journal) or refused (a shared
storage); a journal line lost after Optuna was told is run again and counted; nothing the study
writes holds the storage's URL (whose password it may carry)."""
from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
from _procs import teachers
from optuna.trial import TrialState
from test_sampler import _asked, _new, _search, _study

from audit import folder
from audit.cli import main
from audit.errors import AuditError
from audit.search.confirm import pending_runs
from audit.search.drivers import reconcile
from audit.search.recovery import check, mend
from audit.search.searchers import build_searcher
from audit.search.storage import open_storage, study_name


def test_optuna_journal_removed_is_rebuilt_from_the_journal_and_the_search_goes_on_as_before(tmp_path):
    study = _study(trials=6)
    once = _new(tmp_path / "once", study)
    _search(study, once)
    damaged = _new(tmp_path / "damaged", study)
    _search(study, damaged, stop_after=4)  # killed while its fifth trial ran
    (damaged / "optuna.journal").unlink()

    # Confirming from what is left would confirm nothing (no study in the storage): refused, named.
    with pytest.raises(AuditError) as err:
        pending_runs(study, damaged)
    assert "disagrees with trials.jsonl: it has no Optuna study 'smp.nokd'" in str(err.value)
    assert f"audit resume {damaged}" in str(err.value) and len(str(err.value).splitlines()) == 1

    done = mend(study, damaged)
    assert len(done) == 1 and "rebuilt from the journal" in done[0] and "damaged file kept as optuna.journal.damaged-" in done[0]
    assert list(damaged.glob("optuna.journal.damaged-*"))  # the file found there is kept, not destroyed
    storage = open_storage(None, damaged)
    for method in ("nokd", "kd"):
        trials = optuna.load_study(study_name=study_name(study.name, method), storage=storage).get_trials()
        journaled = {r["optuna_trial"]: r for r in folder.records(damaged, method)}
        for n, rec in journaled.items():
            assert trials[n].state == TrialState.COMPLETE and trials[n].value == rec["val_acc"]
            assert trials[n].params == rec["config"]
    check(study, damaged)  # now in agreement
    reconcile(study, damaged)
    _search(study, damaged)
    assert _asked(damaged) == _asked(once)  # the rebuilt history asks what the lost one would have
    assert folder.read_repairs(damaged)[0]["rebuilt_storage"] is True


def test_an_optuna_journal_line_torn_by_a_kill_is_cut_off_and_the_search_goes_on_as_before(tmp_path):
    study = _study(trials=6)
    once = _new(tmp_path / "once", study)
    _search(study, once)
    torn = _new(tmp_path / "torn", study)
    _search(study, torn, stop_after=4)
    whole = (torn / "optuna.journal").read_bytes()
    with open(torn / "optuna.journal", "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 3, "par')  # a write the kill cut short

    done = mend(study, torn)
    assert done == ["the Optuna journal's last line was torn by a kill (a write that never returned); it is cut off"]
    assert (torn / "optuna.journal").read_bytes() == whole
    assert mend(study, torn) == []  # nothing left to mend
    reconcile(study, torn)  # as `audit resume` goes on: the trial the kill interrupted is cancelled
    _search(study, torn)
    assert _asked(torn) == _asked(once)


def test_a_folder_made_before_the_journal_keeps_its_sqlite_storage(tmp_path):
    """A study folder written by a version that kept Optuna in ``optuna.db`` opens it still."""
    study = _study(trials=2)
    d = _new(tmp_path, study)
    old = optuna.storages.RDBStorage(f"sqlite:///{d / 'optuna.db'}")
    optuna.create_study(study_name=study_name(study.name, "kd"), storage=old, direction="maximize").add_trial(
        optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    storage = open_storage(None, d)
    assert isinstance(storage, optuna.storages.RDBStorage) and not (d / "optuna.journal").exists()
    assert len(optuna.load_study(study_name=study_name(study.name, "kd"), storage=storage).trials) == 1


def test_a_storage_whose_values_differ_from_the_journal_is_named(tmp_path):
    study = _study(trials=2)
    d = _new(tmp_path, study)
    _search(study, d)
    lines = (d / "trials.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec["val_acc"] = 12.5  # the journal says one thing, optuna.db another
    lines[1] = json.dumps(rec)
    (d / "trials.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError) as err:
        check(study, d)
    assert f"{rec['method']} trial 0 (Optuna trial 0) has value" in str(err.value) and "12.5 in trials.jsonl" in str(err.value)


def test_a_shared_storage_that_lost_the_trials_is_refused_not_rebuilt(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = _study(trials=2, storage=url)
    d = _new(tmp_path / "r", study)
    _search(study, d)
    (tmp_path / "shared.db").unlink()  # e.g. a database restored from an older backup
    with pytest.raises(AuditError) as err:
        mend(study, d)
    message = str(err.value)
    assert "a shared storage is not rebuilt" in message and "has no Optuna study 'smp.nokd'" in message
    assert len(message.splitlines()) == 1


def test_a_journal_that_holds_one_trial_twice_is_refused(tmp_path):
    study = _study(trials=2)
    d = _new(tmp_path, study)
    _search(study, d)
    first = (d / "trials.jsonl").read_text().splitlines()[0]
    with open(d / "trials.jsonl", "a") as f:
        f.write(first + "\n")
    with pytest.raises(AuditError, match="holds nokd's Optuna trial 0 2 times"):
        mend(study, d)


def test_the_searchers_pickle_holds_no_storage_url(tmp_path):
    """Ray Tune pickles its searcher into the study folder (ray/search-*/tuner.pkl): the storage,
    whose URL may hold a password, must not be in it."""
    import ray.cloudpickle

    study = _study(trials=2)
    d = _new(tmp_path, study)
    searcher, _ = build_searcher(study, d, lambda rec: None)
    searcher.suggest("t0")  # a live trial and its Optuna study are held too
    path = str(d / "optuna.journal").encode()
    blob = ray.cloudpickle.dumps(searcher)  # how Tune writes tuner.pkl
    assert path not in blob and b"optuna.journal" not in blob


@pytest.mark.slow
def test_a_lost_search_line_already_told_to_optuna_is_run_again_and_counted(tmp_path, teacher_cache, capsys):
    """The line of the trial whose configuration is confirmed is damaged after Optuna was told: on
    resume the trial is run again (same configuration and seed, so the same numbers) and the
    tables are whole again; repairs.json says what happened."""
    cache = str(teachers(teacher_cache))
    assert main(["run", "--method", "kd", "--trials", "2", "--seeds", "1", "--epochs", "1", "--backend", "local",
                 "--out", str(tmp_path), "--name", "torn", "--cache-dir", cache]) == 0
    d = tmp_path / "torn"
    before = pd.read_csv(d / "results.csv").drop(columns=["wall_s"])
    confirmed = next(r["config"] for r in folder.read(d) if r["method"] == "kd" and r["phase"] == "confirm")
    lines = (d / "trials.jsonl").read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if '"phase": "search"' in line and json.loads(line)["config"] == confirmed)
    lines[at] = lines[at][: len(lines[at]) // 2] + "\n"
    (d / "trials.jsonl").write_text("".join(lines))
    (d / "results.csv").unlink()
    capsys.readouterr()

    assert main(["resume", str(d), "--cache-dir", cache]) == 0
    assert "1 unreadable line(s) in trials.jsonl" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(d / "results.csv").drop(columns=["wall_s"]), before, check_exact=True)
    repairs = folder.read_repairs(d)
    assert repairs[0]["torn_lines"] == 1
    reruns = [r["rerun"] for r in repairs if "rerun" in r]
    kd = before[(before.method == "kd") & (before.phase == "search")]
    slot = kd[kd.hp_alpha == confirmed["alpha"]].trial.item()
    assert len(reruns) == 1 and reruns[0]["method"] == "kd" and reruns[0]["trial"] == slot
    assert reruns[0]["same_as_storage"] is True  # the value Optuna holds, computed again
    assert [r["trial"] for r in folder.read(d) if r.get("repaired")] == [slot]
