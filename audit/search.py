"""Hyper-parameter search: one Optuna study per method (seeded TPE, persistent storage), driven
through Ray Tune's ``OptunaSearch`` (``backend="ray"``) or in-process (``backend="local"``).

Trials train on the train split and report validation accuracy every epoch; they are handed the
splits without the test set. The objective told to Optuna is the validation accuracy at the end
of the budget, never a truncated score.
"""
from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import optuna
import torch

from audit import journal
from audit.data import Splits
from audit.errors import AuditError
from audit.study import Study
from audit.trial import Spec, execute, pick_device
from methods import get_method

METRIC = "val_acc"
# Tune's default JSON/CSV/TensorBoard loggers write files per trial that nothing here reads.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
optuna.logging.set_verbosity(optuna.logging.WARNING)


class TrialFailed(RuntimeError):
    """Raised inside a Ray trial so Tune and Optuna record it as failed."""


def storage_url(study: Study, study_dir: Path) -> str:
    return study.storage or f"sqlite:///{(study_dir / 'optuna.db').resolve()}"


def optuna_storage(study: Study, study_dir: Path) -> optuna.storages.BaseStorage:
    url = storage_url(study, study_dir)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - any driver error becomes one clear line
        from audit.study import redact

        raise AuditError(f"cannot open Optuna storage {redact(url)!r}: {type(exc).__name__}") from None


def optuna_study_name(study: Study, method: str) -> str:
    return f"{study.name}.{method}"


def sampler_for(study: Study, method: str) -> optuna.samplers.BaseSampler:
    # A fixed per-method offset keeps samplers independent across methods yet reproducible.
    return optuna.samplers.TPESampler(seed=study.search_seed + zlib.crc32(method.encode()) % 100_000)


def trial_spec(study: Study, method: str, seed: int, threads: int) -> Spec:
    return Spec(method, study.student, study.teacher, study.recipe, seed, threads, study.paper_protocol, study.budget_hash())


def threads_per_trial(study: Study) -> int:
    # The local backend runs one trial at a time, so it may use every core.
    if study.backend == "local":
        return os.cpu_count() or 1
    return max(1, int(study.cpus_per_trial))


def finished_trials(study_dir: Path, method: str, phase: str = "search") -> list[dict]:
    return [r for r in journal.read(study_dir) if r["method"] == method and r["phase"] == phase]


def search_local(
    study: Study, method: str, study_dir: Path, splits: Splits, teacher_state: dict | None,
    on_trial: Callable[[dict], None],
) -> None:
    storage = optuna_storage(study, study_dir)
    ostudy = optuna.create_study(
        study_name=optuna_study_name(study, method), storage=storage, sampler=sampler_for(study, method),
        direction="maximize", load_if_exists=True,
    )
    space = get_method(method).search_space()
    done = len(finished_trials(study_dir, method))
    device = pick_device(study.gpus_per_trial)
    for _ in range(study.trials - done):
        trial = ostudy.ask(space)
        spec = trial_spec(study, method, study.search_seed, threads_per_trial(study))
        record = execute(trial.params, spec, splits, teacher_state, lambda e, m: trial.report(m[METRIC], e), device)
        record.update(phase="search", trial=trial.number)
        if record["status"] == "ok":
            ostudy.tell(trial, record[METRIC])
        else:
            trial.set_user_attr("reason", record["reason"])
            ostudy.tell(trial, state=optuna.trial.TrialState.FAIL)
        journal.append(study_dir, record)
        on_trial(record)


def _ray_trainable(config: dict, spec: Spec = None, splits: Splits = None, teacher_state: dict | None = None, gpus: float = 0.0) -> None:
    from ray import tune

    pending: list[dict] = []

    def on_epoch(epoch: int, metrics: dict) -> None:
        # Report the previous epoch now and hold the last one back for the final, complete record.
        if pending:
            tune.report(pending.pop())
        pending.append({METRIC: metrics[METRIC], "epoch": epoch, "train_loss": metrics["train_loss"]})

    record = execute(config, spec, splits, teacher_state, on_epoch, pick_device(gpus))
    if record["status"] != "ok":
        raise TrialFailed(record["reason"])
    tune.report(record)


def _make_journal_callback():
    from ray.tune import Callback

    class JournalCallback(Callback):
        """Appends each finished or failed trial to the study's journal, in the driver."""

        def __init__(self, study_dir: Path, method: str, spec: Spec, on_trial: Callable[[dict], None]) -> None:
            self.study_dir, self.method, self.spec, self.on_trial = study_dir, method, spec, on_trial

        def __getstate__(self) -> dict:
            # Tune pickles its callbacks with the experiment state; the progress display is not picklable.
            return {**self.__dict__, "on_trial": None}

        def _record(self, record: dict) -> None:
            journal.append(self.study_dir, record)
            if self.on_trial is not None:
                self.on_trial(record)

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            record = dict(trial.last_result)
            record.update(phase="search", trial=trial.trial_id)
            self._record(record)

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            reason = "trial error"
            if trial.error_file and Path(trial.error_file).exists():
                lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
                reason = lines[-1][:300] if lines else reason
            self._record({
                "method": self.method, "phase": "search", "trial": trial.trial_id, "seed": self.spec.seed,
                "config": dict(trial.config), "status": "failed", "reason": reason, "budget_hash": self.spec.budget_hash,
            })

    return JournalCallback


def _JournalCallback(*args):  # noqa: N802 - a class built lazily so importing this module does not import Ray
    return _make_journal_callback()(*args)


def ensure_ray(study: Study) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if study.address:
        ray.init(address=study.address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count(), **kwargs)


def search_ray(
    study: Study, method: str, study_dir: Path, splits: Splits, teacher_state: dict | None,
    on_trial: Callable[[dict], None],
) -> None:
    from ray import tune
    from ray.tune import FailureConfig, RunConfig
    from ray.tune.search.optuna import OptunaSearch

    ensure_ray(study)
    # Tune's result grid looks for per-trial logger files we switched off; our journal holds the results.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    done = len(finished_trials(study_dir, method))
    remaining = study.trials - done
    if remaining <= 0:
        return
    searcher = OptunaSearch(
        space=get_method(method).search_space(), metric=METRIC, mode="max", sampler=sampler_for(study, method),
        study_name=optuna_study_name(study, method), storage=optuna_storage(study, study_dir),
    )
    spec = trial_spec(study, method, study.search_seed, threads_per_trial(study))

    callback = _JournalCallback(study_dir, method, spec, on_trial)
    resources = {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial}
    trainable = tune.with_resources(
        tune.with_parameters(_ray_trainable, spec=spec, splits=splits, teacher_state=teacher_state, gpus=study.gpus_per_trial),
        resources,
    )
    concurrent = study.max_concurrent or max(1, int((os.cpu_count() or 1) // study.cpus_per_trial))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining, max_concurrent_trials=concurrent, reuse_actors=True),
        run_config=RunConfig(
            name=method, storage_path=str((study_dir / "ray").resolve()), verbose=0,
            failure_config=FailureConfig(max_failures=0), callbacks=[callback],
        ),
    )
    tuner.fit()


def search(study: Study, method: str, study_dir: Path, splits: Splits, teacher_state: dict | None, on_trial: Callable[[dict], None]) -> None:
    backend = search_ray if study.backend == "ray" else search_local
    backend(study, method, study_dir, splits.without_test(), teacher_state, on_trial)


def best_config(study: Study, method: str, study_dir: Path) -> dict | None:
    """The best completed trial's parameters, or ``None`` when every trial failed."""
    ostudy = optuna.load_study(study_name=optuna_study_name(study, method), storage=optuna_storage(study, study_dir))
    complete = [t for t in ostudy.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    return dict(max(complete, key=lambda t: (t.value, -t.number)).params)


def teacher_state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
