"""Several drivers on one storage, and drivers that died: who owns a trial, which trials count
against the budget, heartbeats, reconciling after a kill, and waiting for the others.

Each study folder has a driver id (``audit.folder.driver_id``) that its trials carry as the Optuna
user attr ``driver``. A running trial sends a heartbeat when it starts and after its epochs; a driver
waiting to confirm takes another driver's trial silent for ``--stale-after`` minutes as dead.
The heartbeats of one trial are at least a minute apart (a tenth of ``--stale-after`` when that is
shorter): each is a storage write, and a short trial's epochs take seconds.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from audit import folder
from audit.search.objective import METRIC
from audit.search.storage import method_study, open_storage

if TYPE_CHECKING:
    from audit.study import Study

CANCELLED = "cancelled"  # user attr on Optuna trials that do not count against the budget
DRIVER = "driver"  # user attr: the driver id of the folder whose driver started the trial
HEARTBEAT = "heartbeat"  # user attr: unix time of a running trial's last sign of life (its start, each epoch)
STALE_REASON = "cancelled by another driver as stale (no heartbeat for --stale-after); not counted"
HEARTBEAT_EVERY_S = 60.0  # a running trial's heartbeats are at least this far apart (or a tenth of --stale-after)


def heartbeat_s(study: Study) -> float:
    """Seconds between two heartbeats of a running trial: each is a storage write (and, on Ray, a
    result Tune processes), while waiting drivers judge silence in minutes."""
    return min(HEARTBEAT_EVERY_S, study.stale_after_min * 60 / 10)


def told_value(record: dict) -> float:
    """What Optuna is told for a journaled trial (records written before the tie-break: accuracy)."""
    return record[METRIC] if record.get(METRIC) is not None else record["val_acc"]


def counted_trials(ostudy: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count against the budget: every trial not cancelled (running ones included)."""
    return [t for t in ostudy.get_trials(deepcopy=False) if not t.user_attrs.get(CANCELLED)]


def slot_of(trials: list[optuna.trial.FrozenTrial], number: int) -> int:
    """A trial's place in its method's budget: how many counted trials were asked before it. The
    same place holds the same configuration in an interrupted and an uninterrupted study."""
    return sum(1 for t in trials if t.number < number and not t.user_attrs.get(CANCELLED))


def last_sign_of_life(t: optuna.trial.FrozenTrial) -> float:
    """Unix time of a running trial's last heartbeat (its start when it has none)."""
    beat = t.user_attrs.get(HEARTBEAT)
    if beat is not None:
        return float(beat)
    return t.datetime_start.timestamp() if t.datetime_start else time.time()


def reconcile(study: Study, study_dir: Path) -> None:
    """After a driver died: tell Optuna what the journal knows; mark other running trials interrupted.

    Only this folder's own trials are touched: another live driver sharing the storage keeps its own.
    """
    folder.repair(study_dir)
    storage = open_storage(study.storage, study_dir)
    me = folder.driver_id(study_dir)
    for method in study.all_methods:
        ostudy = method_study(storage, study.name, method)
        if ostudy is None:
            continue
        journaled = {r.get("optuna_trial"): r for r in folder.records(study_dir, method)}
        for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(DRIVER, me) != me:
                continue
            rec = journaled.get(t.number)
            if rec is not None and rec["status"] == "ok":
                ostudy.tell(t.number, told_value(rec))
            elif rec is not None:
                # A journaled failure counts against the budget, as when it is told live.
                storage.set_trial_user_attr(t._trial_id, "reason", str(rec.get("reason"))[:500])
                ostudy.tell(t.number, state=TrialState.FAIL)
            else:
                storage.set_trial_user_attr(t._trial_id, CANCELLED, "interrupted")
                ostudy.tell(t.number, state=TrialState.FAIL)


def wait_for_other_drivers(study: Study, study_dir: Path, poll_s: float = 2.0) -> bool:
    """Block until no counted trial is still running, so that the best configuration confirmed is
    chosen from the whole budget even when other drivers sharing the storage are still finishing.

    A trial of another driver with no sign of life for ``study.stale_after_min`` minutes (its
    driver died with it) is cancelled, so it no longer holds a place in the budget; returns
    whether any was, in which case the caller tops the budget up."""
    storage, me, warned, released = open_storage(study.storage, study_dir), folder.driver_id(study_dir), False, False
    log = logging.getLogger(__name__)
    while True:
        others: dict[str, int] = {}
        now = time.time()
        for method in study.all_methods:
            ostudy = method_study(storage, study.name, method)
            if ostudy is None:
                continue
            for t in counted_trials(ostudy):
                if t.state != TrialState.RUNNING or t.user_attrs.get(DRIVER, me) == me:
                    continue
                silent_min = (now - last_sign_of_life(t)) / 60.0
                if silent_min > study.stale_after_min:
                    storage.set_trial_user_attr(t._trial_id, CANCELLED, f"stale: driver {t.user_attrs[DRIVER]} silent for {silent_min:.0f} min")
                    ostudy.tell(t.number, state=TrialState.FAIL)
                    log.warning("cancelled %s trial %d of driver %s: no sign of life for %.0f min (--stale-after %g); "
                                "its place in the budget is run again", method, t.number, t.user_attrs[DRIVER],
                                silent_min, study.stale_after_min)
                    released = True
                else:
                    others[t.user_attrs[DRIVER]] = others.get(t.user_attrs[DRIVER], 0) + 1
        if not others:
            return released
        if not warned:
            log.warning(
                "waiting for %d trials that other drivers sharing the storage are running (%s) before confirming; "
                "a trial silent for %g min (--stale-after) is taken as dead and run again here, or run `audit resume` "
                "on a dead driver's study folder to end the wait now", sum(others.values()),
                ", ".join(f"driver {d}: {n}" for d, n in sorted(others.items())), study.stale_after_min)
            warned = True
        time.sleep(poll_s)
