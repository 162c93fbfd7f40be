"""Where runs execute: in this process (``backend = "local"``) or on Ray, a local instance or a
cluster (``--address``). Search trials go through Ray Tune (with the interleaved searcher);
confirmation runs are plain Ray tasks. Both call ``audit.engine.trial.run_trial``.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from audit.engine.data import Splits
from audit.engine.trial import RunSpec, pick_device, run_trial
from audit.errors import AuditError
from audit.search.drivers import METRIC
from audit.search.objective import with_objective

if TYPE_CHECKING:
    from audit.study import Study

# Tune's default JSON/CSV/TensorBoard loggers write files per trial that nothing here reads.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def threads_per_trial(study: Study) -> int:
    # The local backend runs one trial at a time, so it may use every core.
    if study.backend == "local":
        return os.cpu_count() or 1
    return max(1, int(study.cpus_per_trial))


def run_spec(study: Study, method: str, seed: int) -> RunSpec:
    """What a run of ``method`` with ``seed`` needs from the study."""
    return RunSpec(
        method=method, student=study.student, teacher=study.teacher, recipe=study.recipe, seed=seed,
        threads=threads_per_trial(study), paper_protocol=study.paper_protocol, budget_hash=study.budget_hash(),
        accel=study.accel, options=study.options.get(method, {}),
    )


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------


def ensure_ray(study: Study) -> None:
    import ray

    if study.address:
        _check_answers(study.address)  # also when this process already runs Ray (as under the tests)
    if ray.is_initialized():
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if study.address:
        try:
            ray.init(address=study.address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one clear line instead of Ray's traceback
            raise AuditError(
                f"cannot join the Ray cluster at {study.address!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                " (is it running? a cluster with token authentication also needs RAY_AUTH_MODE=token and its token"
                " in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token: see docs/cluster.md)"
            ) from None
    else:
        # "local": a fresh instance even when `ray start` left a cluster address on this machine.
        ray.init(address="local", num_cpus=os.cpu_count(), **kwargs)


def _check_answers(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds when nothing listens at a ``host:port`` address: Ray itself retries for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto" and client URLs are left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AuditError(
            f"cannot join the Ray cluster at {address!r}: nothing answers there ({reason}); "
            "give the head node's address as printed by `ray start --head` (host:6379) or auto"
        ) from None


def default_concurrency(study: Study) -> int:
    """As many trials as the Ray instance or cluster (not this machine) has room for."""
    import ray

    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", os.cpu_count() or 1) // study.cpus_per_trial)
    if study.gpus_per_trial > 0:
        fits = min(fits, int(resources.get("GPU", 0) // study.gpus_per_trial))
    return max(1, fits)


def _ray_trainable(config: dict, specs: dict[str, RunSpec] = None, splits: Splits = None,
                   teacher_states: dict | None = None, gpus: float = 0.0) -> None:
    import ray
    from ray import tune

    config = dict(config)
    spec = specs[config.pop("method")]
    node = ray.get_runtime_context().get_node_id()  # which node ran it (hostname alone is ambiguous)

    def on_epoch(epoch: int, metrics: dict) -> None:
        if epoch < spec.recipe.epochs:  # the last epoch arrives in the final, complete record
            tune.report({METRIC: with_objective(metrics, n_val)[METRIC], "epoch": epoch, "train_loss": metrics["train_loss"]})

    # A failed run (NaN, OOM) is reported, not raised: it is deterministic, so a retry would waste
    # the budget; Tune's FailureConfig retries only crashes (a lost worker or node).
    n_val = len(splits.val)
    record = run_trial(config, spec, splits, teacher_states, on_epoch, pick_device(gpus))
    tune.report({**with_objective(record, n_val), "node_id": node})


def _remote_run(config: dict, spec: RunSpec, splits: Splits, teacher_states: dict | None, gpus: float) -> dict:
    import ray

    node = ray.get_runtime_context().get_node_id()  # which node ran it, as for search trials
    return {**run_trial(config, spec, splits, teacher_states, None, pick_device(gpus)), "node_id": node}


# ---------------------------------------------------------------------------------------------
# search trials and confirmation runs
# ---------------------------------------------------------------------------------------------


def search_trials(study: Study, study_dir: Path, searcher, total: int, specs: dict[str, RunSpec],  # noqa: ANN001
                  splits: Splits, teacher_states: dict | None) -> None:
    """Run ``total`` trials that ``searcher`` (Ray Tune's interface) hands out, until it says finished."""
    if study.backend == "local":
        _search_local(study, searcher, specs, splits, teacher_states)
    else:
        _search_ray(study, study_dir, searcher, total, specs, splits, teacher_states)


def _search_local(study: Study, searcher, specs: dict[str, RunSpec], splits: Splits, teacher_states: dict | None) -> None:  # noqa: ANN001
    from ray.tune.search import Searcher

    device = pick_device(study.gpus_per_trial)
    while True:
        trial_id = uuid.uuid4().hex[:8]
        config = searcher.suggest(trial_id)
        if config == Searcher.FINISHED or config is None:
            return
        spec = specs[config.pop("method")]
        n_val = len(splits.val)
        report = lambda e, m: searcher.on_trial_result(trial_id, {METRIC: with_objective(m, n_val)[METRIC], "training_iteration": e})  # noqa: E731
        searcher.on_trial_complete(trial_id, with_objective(run_trial(config, spec, splits, teacher_states, report, device), n_val))


def _search_ray(study: Study, study_dir: Path, searcher, total: int, specs: dict[str, RunSpec], splits: Splits,  # noqa: ANN001
                teacher_states: dict | None) -> None:
    from ray import tune
    from ray.tune import FailureConfig, RunConfig

    ensure_ray(study)
    # Tune's result grid looks for per-trial logger files we switched off; our journal holds the results.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    trainable = tune.with_resources(
        # Data and teacher weights go to the object store once, not pickled into every trial.
        tune.with_parameters(_ray_trainable, specs=specs, splits=splits, teacher_states=teacher_states, gpus=study.gpus_per_trial),
        {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial},
    )
    concurrent = study.max_concurrent or default_concurrency(study)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=total, max_concurrent_trials=concurrent, reuse_actors=True),
        run_config=RunConfig(
            name=f"search-{uuid.uuid4().hex[:6]}", storage_path=str((study_dir / "ray").resolve()), verbose=0,
            failure_config=FailureConfig(max_failures=study.max_failures),
        ),
    )
    tuner.fit()


def run_all(study: Study, runs: Iterable[tuple[dict, RunSpec]], splits: Splits, teacher_states: dict | None,
            on_result: Callable[[dict], None]) -> None:
    """Run each (config, spec) once and hand every record to ``on_result`` as it finishes."""
    runs = list(runs)
    if study.backend == "local":
        device = pick_device(study.gpus_per_trial)
        for config, spec in runs:
            on_result(run_trial(config, spec, splits, teacher_states, None, device))
        return

    import ray

    ensure_ray(study)
    remote = ray.remote(num_cpus=study.cpus_per_trial, num_gpus=study.gpus_per_trial)(_remote_run)
    splits_ref, teacher_ref = ray.put(splits), ray.put(teacher_states)
    futures = [remote.remote(config, spec, splits_ref, teacher_ref, study.gpus_per_trial) for config, spec in runs]
    while futures:
        ready, futures = ray.wait(futures, num_returns=1)
        on_result(ray.get(ready[0]))
