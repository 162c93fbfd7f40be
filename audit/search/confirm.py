"""Confirmation: the best configuration of each method re-trained on the study's seeds and
scored on the test set (per epoch, so claims chosen by any rule can be matched)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from audit import folder
from audit.engine.data import Splits
from audit.search.backend import run_all, run_spec
from audit.search.recovery import check
from audit.search.storage import best_config, open_storage

if TYPE_CHECKING:
    from audit.study import Study


def pending_runs(study: Study, study_dir: Path) -> list[tuple[str, int, dict]]:
    """(method, seed, config) for every confirmation run not yet recorded."""
    storage = open_storage(study.storage, study_dir)
    check(study, study_dir, storage)  # never confirm from a storage that lost what the journal holds
    todo = []
    for method in study.all_methods:
        config = best_config(storage, study.name, method)
        if config is None:
            continue  # every search trial failed; the summary says so
        done = {r["seed"] for r in folder.records(study_dir, method, "confirm")}
        todo += [(method, seed, config) for seed in study.seeds if seed not in done]
    return todo


def confirm(study: Study, study_dir: Path, splits: Splits, teacher_states: dict | None,
            on_run: Callable[[dict], None] | None = None) -> None:
    def record(rec: dict) -> None:
        rec["phase"] = "confirm"
        rec["trial"] = None
        folder.append(study_dir, rec)
        if on_run is not None:
            on_run(rec)

    runs = [(config, run_spec(study, method, seed)) for method, seed, config in pending_runs(study, study_dir)]
    run_all(study, study_dir, runs, splits, teacher_states, record)
