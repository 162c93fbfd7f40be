"""The searchers: Ray Tune's ``OptunaSearch`` with the budget rules, one per method, and one that
hands out the methods' trials interleaved (so an interrupted study has balanced partial results).

Exactly-at-budget rules, also when the driver is killed or several drivers share the storage: a
finished trial is journaled before Optuna is told; a trial asked beyond the method's budget
(counted in the shared storage by trial number) is cancelled before it runs. The classes are
built on first use, so that importing this module does not import Ray.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from audit import folder
from audit.search.backend import run_spec
from audit.search.drivers import (
    CANCELLED,
    DRIVER,
    HEARTBEAT,
    HEARTBEAT_EVERY_S,
    STALE_REASON,
    heartbeat_s,
    slot_of,
    told_value,
)
from audit.search.objective import METRIC
from audit.search.sampler import sampler_for
from audit.search.storage import open_storage, study_name
from methods import get_method

if TYPE_CHECKING:
    from audit.engine.trial import RunSpec
    from audit.study import Study


@cache
def _classes() -> tuple[type, type]:
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class BudgetedOptunaSearch(OptunaSearch):
        """``OptunaSearch`` that journals every finished trial before Optuna is told, records a
        failed trial with its reason, and cancels trials asked beyond the method's budget."""

        def __init__(self, *, method: str, budget: int, study_dir: Path, spec: RunSpec,
                     on_trial: Callable[[dict], None] | None, heartbeat_s: float = HEARTBEAT_EVERY_S, **kwargs) -> None:
            super().__init__(**kwargs)
            self.method, self.budget, self.study_dir, self.spec, self.on_trial = method, budget, study_dir, spec, on_trial
            self.heartbeat_s = heartbeat_s
            self.beats: dict[str, float] = {}  # Tune's trial id -> when its last heartbeat was written
            self.driver = folder.driver_id(study_dir)
            self.storage = kwargs["storage"]
            self.slots: dict[str, int] = {}  # Tune's trial id -> the trial's place in the budget
            self.fatal: BaseException | None = None  # a journal or storage write that failed: the study stops

        def __getstate__(self) -> dict:
            # Tune pickles its searcher into the study folder (tuner.pkl) and never reads it back here
            # (save/restore below): keep out the storage, whose URL may hold a password, and the
            # progress display, which is not picklable.
            hidden = {"storage", "_storage", "_ot_study", "_ot_trials", "_sampler", "on_trial", "fatal"}
            return {k: v for k, v in self.__dict__.items() if k not in hidden}

        def save(self, checkpoint_path: str) -> None:
            pass  # resumption reads the Optuna storage and the journal, not Tune's searcher pickle

        def restore(self, checkpoint_path: str) -> None:
            pass

        def suggest(self, trial_id: str):  # noqa: ANN201
            if self.fatal is not None:
                return Searcher.FINISHED
            try:
                config = super().suggest(trial_id)
                ot = self._ot_trials[trial_id]
                slot = slot_of(self._ot_study.get_trials(deepcopy=False), ot.number)
                if slot >= self.budget:
                    # Another driver (or an earlier run) already used the budget: cancel, never run.
                    ot.set_user_attr(CANCELLED, "over budget")
                    self._ot_study.tell(ot, state=TrialState.FAIL)
                    self._completed_trials.add(trial_id)
                    return Searcher.FINISHED
                ot.set_user_attr(DRIVER, self.driver)  # so a resume reconciles only its own trials
                self.beats[trial_id] = time.time()
                ot.set_user_attr(HEARTBEAT, self.beats[trial_id])
            except Exception as exc:  # noqa: BLE001 - a storage that cannot be written stops the study, named
                self.fatal = exc
                return Searcher.FINISHED
            self.slots[trial_id] = slot
            return config

        def _cancelled_elsewhere(self, ot) -> bool:  # noqa: ANN001
            """Another driver took this trial for dead (no heartbeat for --stale-after) and cancelled it."""
            return self.storage.get_trial(ot._trial_id).state != TrialState.RUNNING

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            # An epoch's result is a sign of life, written at most every ``heartbeat_s``: each write
            # is a storage transaction, and waiting drivers judge silence in minutes. Epoch values
            # are not told to Optuna (no pruner reads them); the journal keeps every run's curve.
            ot = self._ot_trials.get(trial_id)
            if ot is None or trial_id in self._completed_trials or self.fatal is not None:
                return
            now = time.time()
            if now - self.beats.get(trial_id, now) < self.heartbeat_s:
                return
            try:
                if self._cancelled_elsewhere(ot):
                    return
                ot.set_user_attr(HEARTBEAT, now)
                self.beats[trial_id] = now
            except Exception as exc:  # noqa: BLE001
                self.fatal = exc

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False,
                              crash: str | None = None) -> None:
            if trial_id in self._completed_trials or self.fatal is not None:
                return
            try:
                self._complete(trial_id, result, error, crash)
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the trial stays running in Optuna, resumable
                self.fatal = exc
                self._completed_trials.add(trial_id)

        def _complete(self, trial_id: str, result: dict | None, error: bool, crash: str | None) -> None:
            ot = self._ot_trials[trial_id]
            self.beats.pop(trial_id, None)
            # Its place in the budget was given to a re-run elsewhere: journal it as not counted, tell nothing.
            stale = self._cancelled_elsewhere(ot)
            # Tune flattens nested results ("config/alpha"): the trial's parameters come from Optuna.
            record = {k: v for k, v in (result or {}).items() if not k.startswith("config/")}
            record["config"] = dict(ot.params)
            if stale or error or record.get("status") != "ok":
                reason = STALE_REASON if stale else record.get("reason") or crash or "the trial crashed (see ray.log)"
                record = {
                    "method": self.method, "seed": self.spec.seed, "config": dict(ot.params),
                    "budget_hash": self.spec.budget_hash, **record, "status": "failed", "reason": reason,
                }
            if record["status"] != "ok":
                record.pop(METRIC, None)
            record.update(phase="search", trial=self.slots.get(trial_id, ot.number), optuna_trial=ot.number)
            folder.append(self.study_dir, record)  # first: a kill after this line loses nothing
            if stale:
                self._completed_trials.add(trial_id)
            elif record["status"] == "ok":
                super().on_trial_complete(trial_id, {METRIC: told_value(record)}, False)
            else:
                ot.set_user_attr("reason", str(record["reason"])[:500])
                self._ot_study.tell(ot, state=TrialState.FAIL)
                self._completed_trials.add(trial_id)
            if self.on_trial is not None:
                self.on_trial(record)

    class InterleavedSearch(Searcher):
        """Hands out trials round-robin over the methods' searchers, each up to its budget, the
        method with the fewest trials first (so a resumed study goes on in the order it had)."""

        def __init__(self, subs: dict[str, BudgetedOptunaSearch], done: dict[str, int], budget: int) -> None:
            super().__init__(metric=METRIC, mode="max")
            self.subs, self.budget = subs, budget
            self.started = {m: done.get(m, 0) for m in subs}
            self.limit = {m: budget for m in subs}
            self.owner: dict[str, str] = {}
            self.tune_trials: dict[str, object] = {}  # Tune's trials by id (filled on Ray): a crash's error

        def __getstate__(self) -> dict:
            return {**self.__dict__, "tune_trials": {}}

        @property
        def fatal(self) -> BaseException | None:
            """The first journal or storage write that failed, which ends the search."""
            return next((s.fatal for s in self.subs.values() if s.fatal is not None), None)

        def set_search_properties(self, metric, mode, config, **spec) -> bool:  # noqa: ANN001
            return True  # the sub-searchers carry their own spaces, metric and mode

        def save(self, checkpoint_path: str) -> None:
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

        def suggest(self, trial_id: str):  # noqa: ANN201
            for method in sorted(self.subs, key=lambda m: self.started[m]):
                if self.fatal is not None:
                    return Searcher.FINISHED
                if self.started[method] >= self.limit[method]:
                    continue
                config = self.subs[method].suggest(trial_id)
                if config == Searcher.FINISHED:
                    self.limit[method] = self.started[method]
                    continue
                self.started[method] += 1
                self.owner[trial_id] = method
                return {**config, "method": method}
            return Searcher.FINISHED

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if isinstance(result.get(METRIC), (int, float)):  # a crashed run's final report has none
                self.subs[self.owner[trial_id]].on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self.owner:
                crash = crash_reason(self.tune_trials.get(trial_id)) if error else None
                self.subs[self.owner[trial_id]].on_trial_complete(trial_id, result, error, crash)

    return BudgetedOptunaSearch, InterleavedSearch


def search_spaces(study: Study, study_dir: Path) -> dict[str, dict]:
    """The spaces the study was created with (its folder keeps them), else the methods' own."""
    kept = folder.read_spaces(study_dir) or {}
    return {m: kept.get(m) or get_method(m).search_space() for m in study.all_methods}


def crash_reason(tune_trial: object) -> str | None:
    """``Type: message`` of the error that ended a Tune trial (a lost worker or node: a run's own
    exceptions are caught where it runs and reported as a failed record)."""
    if tune_trial is None:
        return None
    try:
        exc = tune_trial.get_pickled_error()
    except Exception:  # noqa: BLE001 - an unreadable error file leaves the generic reason
        return None
    if exc is None:
        return None
    exc = getattr(exc, "cause", None) or exc  # a RayTaskError wraps the exception that was raised
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def build_searcher(study: Study, study_dir: Path, on_trial: Callable[[dict], None] | None):  # noqa: ANN201
    """The interleaved searcher for every method with trials left, and how many trials remain."""
    budgeted, interleaved = _classes()
    spaces = search_spaces(study, study_dir)
    storage = open_storage(study.storage, study_dir)
    subs, remaining, done = {}, {}, {}
    for method in study.all_methods:
        done[method] = len(folder.records(study_dir, method))
        left = study.trials - done[method]
        if left <= 0:
            continue
        subs[method] = budgeted(
            method=method, budget=study.trials, study_dir=study_dir, spec=run_spec(study, method, study.search_seed),
            on_trial=on_trial, heartbeat_s=heartbeat_s(study),
            space=spaces[method], metric=METRIC, mode="max",
            sampler=sampler_for(study.search_seed, method, spaces[method]),
            study_name=study_name(study.name, method), storage=storage,
        )
        remaining[method] = left
    return interleaved(subs, done, study.trials), remaining
