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
    METRIC,
    STALE_REASON,
    counted_trials,
)
from audit.search.storage import open_storage, sampler_for, study_name
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
                     on_trial: Callable[[dict], None] | None, **kwargs) -> None:
            super().__init__(**kwargs)
            self.method, self.budget, self.study_dir, self.spec, self.on_trial = method, budget, study_dir, spec, on_trial
            self.driver = folder.driver_id(study_dir)
            self.storage = kwargs["storage"]

        def __getstate__(self) -> dict:
            # Tune pickles its searcher with the experiment state; the progress display is not picklable.
            return {**self.__dict__, "on_trial": None}

        def save(self, checkpoint_path: str) -> None:
            pass  # resumption reads the Optuna storage and the journal, not Tune's searcher pickle

        def restore(self, checkpoint_path: str) -> None:
            pass

        def suggest(self, trial_id: str):  # noqa: ANN201
            config = super().suggest(trial_id)
            ot = self._ot_trials[trial_id]
            numbers = sorted(t.number for t in counted_trials(self._ot_study))
            if numbers.index(ot.number) >= self.budget:
                # Another driver (or an earlier run) already used the budget: cancel, never run.
                ot.set_user_attr(CANCELLED, "over budget")
                self._ot_study.tell(ot, state=TrialState.FAIL)
                self._completed_trials.add(trial_id)
                return Searcher.FINISHED
            ot.set_user_attr(DRIVER, self.driver)  # so a resume reconciles only its own trials
            ot.set_user_attr(HEARTBEAT, time.time())
            return config

        def _cancelled_elsewhere(self, ot) -> bool:  # noqa: ANN001
            """Another driver took this trial for dead (no heartbeat for --stale-after) and cancelled it."""
            return self.storage.get_trial(ot._trial_id).state != TrialState.RUNNING

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            ot = self._ot_trials.get(trial_id)
            if ot is None or trial_id in self._completed_trials or self._cancelled_elsewhere(ot):
                return
            ot.set_user_attr(HEARTBEAT, time.time())
            super().on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self._completed_trials:
                return
            ot = self._ot_trials[trial_id]
            # Its place in the budget was given to a re-run elsewhere: journal it as not counted, tell nothing.
            stale = self._cancelled_elsewhere(ot)
            # Tune flattens nested results ("config/alpha"): the trial's parameters come from Optuna.
            record = {k: v for k, v in (result or {}).items() if not k.startswith("config/")}
            record["config"] = dict(ot.params)
            if stale or error or record.get("status") != "ok":
                reason = STALE_REASON if stale else record.get("reason") or "the trial crashed (see the Ray logs)"
                record = {
                    "method": self.method, "seed": self.spec.seed, "config": dict(ot.params),
                    "budget_hash": self.spec.budget_hash, **record, "status": "failed", "reason": reason,
                }
            if record["status"] != "ok":
                record.pop(METRIC, None)
            record.update(phase="search", trial=ot.number, optuna_trial=ot.number)
            folder.append(self.study_dir, record)  # first: a kill after this line loses nothing
            if stale:
                self._completed_trials.add(trial_id)
            elif record["status"] == "ok":
                super().on_trial_complete(trial_id, {METRIC: record[METRIC]}, False)
            else:
                ot.set_user_attr("reason", str(record["reason"])[:500])
                self._ot_study.tell(ot, state=TrialState.FAIL)
                self._completed_trials.add(trial_id)
            if self.on_trial is not None:
                self.on_trial(record)

    class InterleavedSearch(Searcher):
        """Hands out trials round-robin over the methods' searchers, each up to its budget."""

        def __init__(self, subs: dict[str, BudgetedOptunaSearch], remaining: dict[str, int]) -> None:
            super().__init__(metric=METRIC, mode="max")
            self.subs, self.remaining = subs, dict(remaining)
            self.started = {m: 0 for m in subs}
            self.owner: dict[str, str] = {}

        def set_search_properties(self, metric, mode, config, **spec) -> bool:  # noqa: ANN001
            return True  # the sub-searchers carry their own spaces, metric and mode

        def save(self, checkpoint_path: str) -> None:
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

        def suggest(self, trial_id: str):  # noqa: ANN201
            for method in sorted(self.subs, key=lambda m: self.started[m]):
                if self.started[method] >= self.remaining[method]:
                    continue
                config = self.subs[method].suggest(trial_id)
                if config == Searcher.FINISHED:
                    self.remaining[method] = self.started[method]
                    continue
                self.started[method] += 1
                self.owner[trial_id] = method
                return {**config, "method": method}
            return Searcher.FINISHED

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if METRIC in result:
                self.subs[self.owner[trial_id]].on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self.owner:
                self.subs[self.owner[trial_id]].on_trial_complete(trial_id, result, error)

    return BudgetedOptunaSearch, InterleavedSearch


def search_spaces(study: Study, study_dir: Path) -> dict[str, dict]:
    """The spaces the study was created with (its folder keeps them), else the methods' own."""
    kept = folder.read_spaces(study_dir) or {}
    return {m: kept.get(m) or get_method(m).search_space() for m in study.all_methods}


def build_searcher(study: Study, study_dir: Path, on_trial: Callable[[dict], None] | None):  # noqa: ANN201
    """The interleaved searcher for every method with trials left, and how many trials remain."""
    budgeted, interleaved = _classes()
    spaces = search_spaces(study, study_dir)
    storage = open_storage(study.storage, study_dir)
    subs, remaining = {}, {}
    for method in study.all_methods:
        left = study.trials - len(folder.records(study_dir, method))
        if left <= 0:
            continue
        subs[method] = budgeted(
            method=method, budget=study.trials, study_dir=study_dir, spec=run_spec(study, method, study.search_seed), on_trial=on_trial,
            space=spaces[method], metric=METRIC, mode="max", sampler=sampler_for(study.search_seed, method),
            study_name=study_name(study.name, method), storage=storage,
        )
        remaining[method] = left
    return interleaved(subs, remaining), remaining
