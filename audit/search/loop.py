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
from audit.search.backend import run_spec, search_trials
from audit.search.drivers import wait_for_other_drivers
from audit.search.searchers import build_searcher
from methods import get_method

if TYPE_CHECKING:
    from audit.study import Study


def search_spaces(study: Study, study_dir: Path) -> dict[str, dict]:
    """The spaces the study was created with (its folder keeps them), else the methods' own."""
    kept = folder.read_spaces(study_dir) or {}
    return {m: kept.get(m) or get_method(m).search_space() for m in study.all_methods}


def search(study: Study, study_dir: Path, splits: Splits, teacher_states: dict | None,
           on_trial: Callable[[dict], None] | None = None) -> None:
    """Run every method's remaining search trials, interleaved; then wait for other drivers
    sharing the storage, and run again the places of any of their trials found dead."""
    specs = {m: run_spec(study, m, study.search_seed) for m in study.all_methods}
    spaces = search_spaces(study, study_dir)
    train_splits = splits.without_test()
    while True:
        searcher, remaining = build_searcher(study, study_dir, specs, spaces, on_trial)
        if remaining:
            search_trials(study, study_dir, searcher, sum(remaining.values()), {m: specs[m] for m in remaining},
                          train_splits, teacher_states)
        if not wait_for_other_drivers(study, study_dir):
            return
