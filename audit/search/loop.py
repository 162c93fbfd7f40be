"""Hyper-parameter search: one Optuna study per method (seeded TPE, persistent storage), each
driven by Ray Tune's ``OptunaSearch``; the methods' trials are interleaved in one Tuner so an
interrupted study has balanced partial results. ``backend="local"`` drives the same searchers
in-process, one trial at a time.

Trials train on the train split and report validation accuracy every epoch; they are handed the
splits without the test set. The objective told to Optuna is the validation accuracy at the end
of the budget, never a truncated score.

Exactly-at-budget rules, also when the driver is killed or several drivers share the storage:
a finished trial is journaled before Optuna is told; a trial asked beyond the method's budget
(counted in the shared storage by trial number) is cancelled before it runs; on resume, trials
left running by a dead driver are told from the journal if they finished, else marked interrupted.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from audit import folder as journal
from audit.engine.data import Splits
from audit.errors import AuditError
from audit.study import Study, redact
from audit.engine.trial import Spec, execute, pick_device
from methods import get_method

METRIC = "val_acc"
CANCELLED = "cancelled"  # user attr on Optuna trials that do not count against the budget
DRIVER_ID = "driver_id"  # file in the study folder: the id its trials carry as user attr "driver"
HEARTBEAT = "heartbeat"  # user attr: unix time of a running trial's last sign of life (its start, each epoch)
STALE_REASON = "cancelled by another driver as stale (no heartbeat for --stale-after); not counted"
# Tune's default JSON/CSV/TensorBoard loggers write files per trial that nothing here reads.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(study: Study, study_dir: Path) -> str:
    return study.storage or f"sqlite:///{(study_dir / 'optuna.db').resolve()}"


def _with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; use psycopg2 where only that is installed."""
    if url.startswith("postgresql://"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def optuna_storage(study: Study, study_dir: Path) -> optuna.storages.BaseStorage:
    url = storage_url(study, study_dir)
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(_SCHEMA_RACE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(_with_driver(url), heartbeat_interval=None)
        except (IntegrityError, ProgrammingError) as exc:
            # Two drivers creating Optuna's tables in an empty PostgreSQL database at the same
            # moment collide (duplicate type/relation); the loser finds the tables made on retry.
            text = str(exc).lower()
            if attempt + 1 < _SCHEMA_RACE_ATTEMPTS and ("duplicate" in text or "already exists" in text):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise AuditError(_storage_error(url, exc)) from None
        except Exception as exc:  # noqa: BLE001 - any driver error becomes one clear line
            raise AuditError(_storage_error(url, exc)) from None
    raise AssertionError("unreachable")


_SCHEMA_RACE_ATTEMPTS = 6


def _storage_error(url: str, exc: Exception) -> str:
    return f"cannot open Optuna storage {redact(url)!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def optuna_study_name(study: Study, method: str) -> str:
    return f"{study.name}.{method}"


def sampler_for(study: Study, method: str) -> optuna.samplers.BaseSampler:
    # A fixed per-method offset keeps samplers independent across methods yet reproducible.
    return optuna.samplers.TPESampler(seed=study.search_seed + zlib.crc32(method.encode()) % 100_000)


def trial_spec(study: Study, method: str, seed: int, threads: int) -> Spec:
    return Spec(
        method, study.student, study.teacher, study.recipe, seed, threads, study.paper_protocol, study.budget_hash(),
        study.assistant, tuple(study.extra_teachers), study.accel,
    )


def threads_per_trial(study: Study) -> int:
    # The local backend runs one trial at a time, so it may use every core.
    if study.backend == "local":
        return os.cpu_count() or 1
    return max(1, int(study.cpus_per_trial))


def finished_trials(study_dir: Path, method: str, phase: str = "search") -> list[dict]:
    return [r for r in journal.read(study_dir) if r["method"] == method and r["phase"] == phase]


def counted_trials(ostudy: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count against the budget: every trial not cancelled (running ones included)."""
    return [t for t in ostudy.get_trials(deepcopy=False) if not t.user_attrs.get(CANCELLED)]


def driver_id(study_dir: Path) -> str:
    """Who started a trial: an id kept in the study folder (so it survives moving the folder).
    Drivers sharing one storage, each with its own folder, each own their trials."""
    path = study_dir / DRIVER_ID
    if not path.exists():
        path.write_text(f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}\n")
    return path.read_text().strip()


def reconcile(study: Study, study_dir: Path) -> None:
    """After a driver died: tell Optuna what the journal knows; mark other running trials interrupted.

    Only this folder's own trials are touched: another live driver sharing the storage keeps its own.
    """
    _repair_journal(study_dir)
    storage = optuna_storage(study, study_dir)
    me = driver_id(study_dir)
    for method in study.all_methods:
        try:
            ostudy = optuna.load_study(study_name=optuna_study_name(study, method), storage=storage)
        except KeyError:
            continue
        journaled = {r.get("optuna_trial"): r for r in finished_trials(study_dir, method)}
        for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("driver", me) != me:
                continue
            rec = journaled.get(t.number)
            if rec is not None and rec["status"] == "ok":
                ostudy.tell(t.number, rec[METRIC])
            elif rec is not None:
                # A journaled failure counts against the budget, as when it is told live.
                storage.set_trial_user_attr(t._trial_id, "reason", str(rec.get("reason"))[:500])
                ostudy.tell(t.number, state=TrialState.FAIL)
            else:
                storage.set_trial_user_attr(t._trial_id, CANCELLED, "interrupted")
                ostudy.tell(t.number, state=TrialState.FAIL)


def _repair_journal(study_dir: Path) -> None:
    """End a line torn by a kill mid-write, so the next record is not glued onto it (and lost with it)."""
    path = study_dir / journal.JOURNAL
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def last_sign_of_life(t: optuna.trial.FrozenTrial) -> float:
    """Unix time of a running trial's last heartbeat (its start when it has none)."""
    beat = t.user_attrs.get(HEARTBEAT)
    if beat is not None:
        return float(beat)
    return t.datetime_start.timestamp() if t.datetime_start else time.time()


def wait_for_other_drivers(study: Study, study_dir: Path, poll_s: float = 2.0) -> bool:
    """Block until no counted trial is still running, so that the best configuration confirmed is
    chosen from the whole budget even when other drivers sharing the storage are still finishing.

    A trial of another driver with no sign of life for ``study.stale_after_min`` minutes (its
    driver died with it) is cancelled, so it no longer holds a place in the budget; returns
    whether any was, in which case the caller tops the budget up."""
    storage, me, warned, released = optuna_storage(study, study_dir), driver_id(study_dir), False, False
    log = logging.getLogger(__name__)
    while True:
        others: dict[str, int] = {}
        now = time.time()
        for method in study.all_methods:
            try:
                ostudy = optuna.load_study(study_name=optuna_study_name(study, method), storage=storage)
            except KeyError:
                continue
            for t in counted_trials(ostudy):
                if t.state != TrialState.RUNNING or t.user_attrs.get("driver", me) == me:
                    continue
                silent_min = (now - last_sign_of_life(t)) / 60.0
                if silent_min > study.stale_after_min:
                    storage.set_trial_user_attr(t._trial_id, CANCELLED, f"stale: driver {t.user_attrs['driver']} silent for {silent_min:.0f} min")
                    ostudy.tell(t.number, state=TrialState.FAIL)
                    log.warning("cancelled %s trial %d of driver %s: no sign of life for %.0f min (--stale-after %g); "
                                "its place in the budget is run again", method, t.number, t.user_attrs["driver"],
                                silent_min, study.stale_after_min)
                    released = True
                else:
                    others[t.user_attrs["driver"]] = others.get(t.user_attrs["driver"], 0) + 1
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


def _searcher_class():
    """Built lazily so that importing this module does not import Ray."""
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class BudgetedOptunaSearch(OptunaSearch):
        """``OptunaSearch`` that journals every finished trial before Optuna is told, records a
        failed trial with its reason, and cancels trials asked beyond the method's budget."""

        def __init__(self, *, method: str, budget: int, study_dir: Path, spec: Spec,
                     on_trial: Callable[[dict], None], **kwargs) -> None:
            super().__init__(**kwargs)
            self.method, self.budget, self.study_dir, self.spec, self.on_trial = method, budget, study_dir, spec, on_trial
            self.driver = driver_id(study_dir)
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
            ot.set_user_attr("driver", self.driver)  # so a resume reconciles only its own trials
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
            journal.append(self.study_dir, record)  # first: a kill after this line loses nothing
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


def build_searcher(study: Study, study_dir: Path, on_trial: Callable[[dict], None]):  # noqa: ANN201
    """The interleaved searcher for every method with trials left, and how many trials remain."""
    budgeted, interleaved = _searcher_class()
    storage = optuna_storage(study, study_dir)
    subs, remaining = {}, {}
    for method in study.all_methods:
        left = study.trials - len(finished_trials(study_dir, method))
        if left <= 0:
            continue
        spec = trial_spec(study, method, study.search_seed, threads_per_trial(study))
        subs[method] = budgeted(
            method=method, budget=study.trials, study_dir=study_dir, spec=spec, on_trial=on_trial,
            space=get_method(method).search_space(), metric=METRIC, mode="max", sampler=sampler_for(study, method),
            study_name=optuna_study_name(study, method), storage=storage,
        )
        remaining[method] = left
    return interleaved(subs, remaining), remaining


def _ray_trainable(config: dict, specs: dict[str, Spec] = None, splits: Splits = None,
                   teacher_states: dict | None = None, gpus: float = 0.0) -> None:
    import ray
    from ray import tune

    config = dict(config)
    spec = specs[config.pop("method")]
    node = ray.get_runtime_context().get_node_id()  # which node ran it (hostname alone is ambiguous)

    def on_epoch(epoch: int, metrics: dict) -> None:
        if epoch < spec.recipe.epochs:  # the last epoch arrives in the final, complete record
            tune.report({METRIC: metrics[METRIC], "epoch": epoch, "train_loss": metrics["train_loss"]})

    # A failed run (NaN, OOM) is reported, not raised: it is deterministic, so a retry would waste
    # the budget; Tune's FailureConfig retries only crashes (a lost worker or node).
    tune.report({**execute(config, spec, splits, teacher_states, on_epoch, pick_device(gpus)), "node_id": node})


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


def search(study: Study, study_dir: Path, splits: Splits, teacher_states: dict | None, on_trial: Callable[[dict], None]) -> None:
    """Run every method's remaining search trials, interleaved; then wait for other drivers
    sharing the storage, and run again the places of any of their trials found dead."""
    searcher, remaining = build_searcher(study, study_dir, on_trial)
    train_splits = splits.without_test()
    while True:
        if remaining:
            specs = {m: trial_spec(study, m, study.search_seed, threads_per_trial(study)) for m in remaining}
            if study.backend == "local":
                _search_local(study, searcher, specs, train_splits, teacher_states)
            else:
                _search_ray(study, study_dir, searcher, sum(remaining.values()), specs, train_splits, teacher_states)
        if not wait_for_other_drivers(study, study_dir):
            return
        searcher, remaining = build_searcher(study, study_dir, on_trial)


def _search_local(study: Study, searcher, specs: dict[str, Spec], splits: Splits, teacher_states: dict | None) -> None:  # noqa: ANN001
    from ray.tune.search import Searcher

    device = pick_device(study.gpus_per_trial)
    while True:
        trial_id = uuid.uuid4().hex[:8]
        config = searcher.suggest(trial_id)
        if config == Searcher.FINISHED or config is None:
            return
        spec = specs[config.pop("method")]
        report = lambda e, m: searcher.on_trial_result(trial_id, {METRIC: m[METRIC], "training_iteration": e})  # noqa: E731
        searcher.on_trial_complete(trial_id, execute(config, spec, splits, teacher_states, report, device))


def _search_ray(study: Study, study_dir: Path, searcher, total: int, specs: dict[str, Spec], splits: Splits,  # noqa: ANN001
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


def best_config(study: Study, method: str, study_dir: Path) -> dict | None:
    """The best completed trial's parameters (earliest on ties), or ``None`` when none completed."""
    try:
        ostudy = optuna.load_study(study_name=optuna_study_name(study, method), storage=optuna_storage(study, study_dir))
    except KeyError:
        return None
    complete = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return None
    return dict(max(complete, key=lambda t: (t.value, -t.number)).params)


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
