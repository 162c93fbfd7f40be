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

from audit.engine.data import Splits
from audit.search.backend import search_trials
from audit.search.drivers import wait_for_other_drivers
from audit.search.searchers import build_searcher

if TYPE_CHECKING:
    from audit.study import Study


def search(study: Study, study_dir: Path, splits: Splits, teacher_states: dict | None,
           on_trial: Callable[[dict], None] | None = None) -> None:
    """Run every method's remaining search trials, interleaved; then wait for other drivers
    sharing the storage, and run again the places of any of their trials found dead."""
    train_splits = splits.without_test()
    while True:
        searcher, remaining = build_searcher(study, study_dir, on_trial)
        if remaining:
            specs = {m: searcher.subs[m].spec for m in remaining}
            search_trials(study, study_dir, searcher, sum(remaining.values()), specs, train_splits, teacher_states)
        if not wait_for_other_drivers(study, study_dir):
            return
