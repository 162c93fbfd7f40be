"""The search: one Optuna study per method (seeded TPE, persistent storage), driven through the
interleaved searcher on the study's backend until every method has its budget of trials.

Trials train on the train split and report validation accuracy every epoch; they are handed the
splits without the test set. The objective told to Optuna is the validation accuracy at the end
of the budget, never a truncated score. When other drivers share the storage, the search waits
for their trials before the best configurations are confirmed, and runs again the places of any
of their trials found dead.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from audit import folder
from audit.engine.data import Splits
from audit.search.backend import run_all, run_spec, search_trials
from audit.search.drivers import wait_for_other_drivers
from audit.search.objective import with_objective
from audit.search.recovery import lost_record, lost_trials
from audit.search.searchers import build_searcher

if TYPE_CHECKING:
    from audit.study import Study


def search(study: Study, study_dir: Path, splits: Splits, teacher_states: dict | None,
           on_trial: Callable[[dict], None] | None = None) -> None:
    """Run every method's remaining search trials, interleaved; then wait for other drivers
    sharing the storage, and run again the places of any of their trials found dead."""
    train_splits = splits.without_test()
    _run_lost_again(study, study_dir, train_splits, teacher_states, on_trial)
    while True:
        searcher, remaining = build_searcher(study, study_dir, on_trial)
        if remaining:
            specs = {m: searcher.subs[m].spec for m in remaining}
            search_trials(study, study_dir, searcher, sum(remaining.values()), specs, train_splits, teacher_states)
        if not wait_for_other_drivers(study, study_dir):
            return


def _run_lost_again(study: Study, study_dir: Path, splits: Splits, teacher_states: dict | None,
                    on_trial: Callable[[dict], None] | None) -> None:
    """Finished trials whose journal line was lost, run again on their configuration and seed."""
    for method, slot, t in lost_trials(study, study_dir):
        def record(rec: dict, slot: int = slot, t=t) -> None:  # noqa: ANN001
            # Told and compared as a live trial's record is: with the search objective.
            rec = with_objective(rec, len(splits.val)) if rec.get("status") == "ok" else rec
            folder.append(study_dir, lost_record(rec, slot, t, study_dir))
            if on_trial is not None:
                on_trial(rec)

        run_all(study, study_dir, [(dict(t.params), run_spec(study, method, study.search_seed))], splits, teacher_states, record)
