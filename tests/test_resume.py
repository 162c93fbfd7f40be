"""Reconciling a journal and an Optuna storage that disagree after a kill, and drivers sharing one
storage (waiting for each other, taking a dead one's trial). ``audit resume`` after SIGKILL at every
phase, compared with an uninterrupted study, is in tests/test_reliability.py."""
from __future__ import annotations

import re

import optuna
import pandas as pd
import pytest
from _procs import teachers, wait_for
from optuna.trial import TrialState

from audit import folder as audit_journal
from audit.pipeline import Paths, create
from audit.search.drivers import CANCELLED, reconcile
from audit.search.objective import METRIC
from audit.search.searchers import build_searcher
from audit.search.storage import open_storage, study_name
from audit.study import Study


def test_reconcile_tells_journaled_trials_and_cancels_interrupted_ones(tmp_path):
    """What a kill leaves: trials journaled but still RUNNING in Optuna (killed between the two
    writes; one ok, one failed), one interrupted mid-run, a torn last journal line; and a trial of
    another live driver sharing the storage, which must be left alone."""
    study = Study(name="rc", methods=["kd"], trials=5, seeds=[1], backend="local")
    folder = create(study, Paths(tmp_path))
    url = open_storage(study.storage, folder)
    ostudy = optuna.create_study(study_name=study_name(study.name, "kd"), storage=url, direction="maximize")
    done, failed, interrupted, foreign = (ostudy.ask() for _ in range(4))
    for t in (done, failed, interrupted):
        t.set_user_attr("driver", audit_journal.driver_id(folder))
    foreign.set_user_attr("driver", "elsewhere:/reports/rc")
    for t, status in ((done, "ok"), (failed, "failed")):
        audit_journal.append(folder, {"method": "kd", "phase": "search", "trial": t.number, "optuna_trial": t.number,
                                      "status": status, "reason": "loss is NaN" if status != "ok" else "",
                                      "val_acc": 91.5 if status == "ok" else None, "seed": 0, "config": {}})
    with open(folder / "trials.jsonl", "a") as f:
        f.write('{"method": "kd", "phase": "sea')  # torn by the kill
    # A study folder may be moved before it is resumed: it still owns its trials.
    (tmp_path / "moved").mkdir()
    folder = folder.rename(tmp_path / "moved" / folder.name)
    url = open_storage(study.storage, folder)

    reconcile(study, folder)

    trials = optuna.load_study(study_name=study_name(study.name, "kd"), storage=url).get_trials()
    assert trials[done.number].state == TrialState.COMPLETE and trials[done.number].value == 91.5
    # A journaled failure counts against the budget (FAIL, not cancelled), like one told live.
    assert trials[failed.number].state == TrialState.FAIL and CANCELLED not in trials[failed.number].user_attrs
    assert trials[failed.number].user_attrs["reason"] == "loss is NaN"
    assert trials[interrupted.number].state == TrialState.FAIL
    assert trials[interrupted.number].user_attrs[CANCELLED] == "interrupted"
    assert trials[foreign.number].state == TrialState.RUNNING  # another driver's, still running
    # The budget left is what the journal does not hold; the interrupted trial will be re-run.
    _, remaining = build_searcher(study, folder, lambda rec: None)
    assert remaining == {"nokd": 5, "kd": 5 - 2}
    # The next record is not glued onto the torn line.
    audit_journal.append(folder, {"method": "kd", "phase": "search", "trial": 9, "status": "ok"})
    assert [r.get("trial") for r in audit_journal.read(folder)] == [done.number, failed.number, 9]


def test_waiting_for_another_driver_says_which_and_how_to_end_it(tmp_path, caplog):
    """Before confirming, a driver waits for the trials other drivers sharing the storage still
    run (alive: a fresh start, within --stale-after); it names them and says what ends the wait,
    and goes on once they are told."""
    import logging
    import threading

    from audit.search.drivers import wait_for_other_drivers

    study = Study(name="wt", methods=["kd"], trials=2, seeds=[1], backend="local")
    folder = create(study, Paths(tmp_path))
    url = open_storage(study.storage, folder)
    ostudy = optuna.create_study(study_name=study_name(study.name, "kd"), storage=url, direction="maximize")
    foreign = ostudy.ask()
    foreign.set_user_attr("driver", "other-host-1234")
    waiter = threading.Thread(target=wait_for_other_drivers, args=(study, folder), kwargs={"poll_s": 0.05})
    with caplog.at_level(logging.WARNING, logger="audit.search.drivers"):
        waiter.start()
        wait_for("the waiting message", lambda: "waiting for" in caplog.text, timeout=30)
        assert waiter.is_alive()  # still waiting: the other driver's trial is running
        ostudy.tell(foreign, 97.0)
        waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert "waiting for 1 trials that other drivers" in caplog.text and "driver other-host-1234: 1" in caplog.text
    assert "a trial silent for 30 min (--stale-after) is taken as dead" in caplog.text
    assert "run `audit resume` on a dead driver's study folder" in caplog.text


@pytest.mark.slow
def test_a_dead_drivers_trial_is_cancelled_and_its_place_run_again(tmp_path, teacher_cache):
    """A driver sharing the storage died mid-trial an hour ago: the live driver takes its silent
    trial for dead, cancels it and runs its place itself, so the budget still ends exact."""
    import time

    from audit.cli import main
    from audit.search.drivers import HEARTBEAT

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ghost = optuna.create_study(study_name="st.kd", storage=url, direction="maximize").ask()
    ghost.set_user_attr("driver", "dead-host-1")
    ghost.set_user_attr(HEARTBEAT, time.time() - 3600)
    started = time.time()
    code = main(["run", "--method", "kd", "--trials", "2", "--seeds", "1", "--epochs", "1", "--backend", "local",
                 "--storage", url, "--out", str(tmp_path / "r"), "--name", "st", "--stale-after", "30",
                 "--cache-dir", str(teachers(teacher_cache))])
    assert code == 0
    trials = optuna.load_study(study_name="st.kd", storage=url).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    dead = trials[ghost.number]
    said = re.match(r"stale: driver dead-host-1 silent for (\d+) min", dead.user_attrs[CANCELLED])
    # an hour, plus however long this run took to reach the trial on a busy machine
    assert dead.state == TrialState.FAIL and said and 60 <= int(said[1]) <= 60 + (time.time() - started) / 60 + 1
    results = pd.read_csv(tmp_path / "r" / "st" / "results.csv")
    assert ((results.method == "kd") & (results.phase == "search") & (results.status == "ok")).sum() == 2


def test_a_slow_driver_whose_trial_was_cancelled_as_stale_goes_on(tmp_path):
    """The other side: a driver that was only slow finds its trial cancelled by another driver.
    Its epochs and its result are not told to Optuna (the place was run again elsewhere); the
    result is journaled as not counted, and nothing raises."""
    study = Study(name="sl", methods=["kd"], trials=2, seeds=[1], backend="local")
    folder = create(study, Paths(tmp_path))
    searcher, _ = build_searcher(study, folder, lambda rec: None)
    config = searcher.suggest("t1")
    assert config["method"] in ("nokd", "kd")
    sub = searcher.subs[config["method"]]
    ot = sub._ot_trials["t1"]
    sub.storage.set_trial_user_attr(ot._trial_id, CANCELLED, "stale: driver x silent for 31 min")
    sub._ot_study.tell(ot.number, state=TrialState.FAIL)
    searcher.on_trial_result("t1", {METRIC: 50.0, "training_iteration": 1})
    searcher.on_trial_complete("t1", {METRIC: 90.0, "val_acc": 90.0, "status": "ok", "method": config["method"]})
    rec = audit_journal.read(folder)[-1]
    assert rec["status"] == "failed" and "cancelled by another driver as stale" in rec["reason"] and METRIC not in rec
    frozen = sub._ot_study.get_trials()[ot.number]
    assert frozen.state == TrialState.FAIL and frozen.intermediate_values == {}
