"""Confirmation: the best configuration of each method re-trained on the study's seeds and
scored on the test set (per epoch, so claims chosen by any rule can be matched)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audit import folder as journal
from audit.engine.data import Splits
from audit.search.loop import best_config, ensure_ray, finished_trials, threads_per_trial, trial_spec
from audit.study import Study
from audit.engine.trial import execute, pick_device


def pending_runs(study: Study, study_dir: Path) -> list[tuple[str, int, dict]]:
    """(method, seed, config) for every confirmation run not yet recorded."""
    todo = []
    for method in study.all_methods:
        config = best_config(study, method, study_dir)
        if config is None:
            continue  # every search trial failed; the summary says so
        done = {r["seed"] for r in finished_trials(study_dir, method, "confirm")}
        todo += [(method, seed, config) for seed in study.seeds if seed not in done]
    return todo


def confirm(
    study: Study, study_dir: Path, splits: Splits, teacher_states: dict | None, on_run: Callable[[dict], None]
) -> None:
    todo = pending_runs(study, study_dir)
    threads = threads_per_trial(study)

    def record(rec: dict) -> None:
        rec["phase"] = "confirm"
        rec["trial"] = None
        journal.append(study_dir, rec)
        on_run(rec)

    if study.backend == "local":
        device = pick_device(study.gpus_per_trial)
        for method, seed, config in todo:
            record(execute(config, trial_spec(study, method, seed, threads), splits, teacher_states, None, device))
        return

    import ray

    ensure_ray(study)
    remote = ray.remote(num_cpus=study.cpus_per_trial, num_gpus=study.gpus_per_trial)(_remote_execute)
    splits_ref, teacher_ref = ray.put(splits), ray.put(teacher_states)
    futures = [
        remote.remote(config, trial_spec(study, method, seed, threads), splits_ref, teacher_ref, study.gpus_per_trial)
        for method, seed, config in todo
    ]
    while futures:
        ready, futures = ray.wait(futures, num_returns=1)
        record(ray.get(ready[0]))


def _remote_execute(config: dict, spec, splits: Splits, teacher_states: dict | None, gpus: float) -> dict:  # noqa: ANN001
    import ray

    node = ray.get_runtime_context().get_node_id()  # which node ran it, as for search trials
    return {**execute(config, spec, splits, teacher_states, None, pick_device(gpus)), "node_id": node}
