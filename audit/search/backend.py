"""Where runs execute: in this process (``backend = "local"``) or on Ray, a local instance or a
cluster (``--address``). Search trials go through Ray Tune (with the interleaved searcher);
confirmation runs are plain Ray tasks. Both run ``audit.search.runs``, as Ray's workers import it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from audit.engine.data import Splits
from audit.engine.trial import RunSpec, pick_device
from audit.errors import AuditError
from audit.search.objective import METRIC, with_objective
from audit.search.runs import guarded_run, put_shared, ray_trainable, remote_run

if TYPE_CHECKING:
    from audit.study import Study

# Tune's default JSON/CSV/TensorBoard loggers write files per trial that nothing here reads.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Tune's experiment state (every trial's last result: 2.9 MB by the end of the main job's search),
# saved every 10 s or more while trials wait on the driver, serves Tuner.restore, which nothing here
# uses: a study resumes from its journal and Optuna storage. Saved at the start and the end only.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1e9")

RAY_LOG = "ray.log"  # in the study folder: what Ray and Ray Tune (its searcher too, under the local backend) print


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
    if study.address:
        try:
            ray.init(address=study.address, **_RAY_INIT)
        except Exception as exc:  # noqa: BLE001 - one clear line instead of Ray's traceback
            raise AuditError(
                f"cannot join the Ray cluster at {study.address!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                " (is it running? a cluster with token authentication also needs RAY_AUTH_MODE=token and its token"
                " in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token: see docs/cluster.md)"
            ) from None
    else:
        start_local_ray()
        _OWN_RAY.append(True)


_OWN_RAY: list[bool] = []  # not empty once ensure_ray started this process's Ray instance
_RAY_INIT = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}


def start_local_ray(num_cpus: int | None = None) -> None:
    """A fresh Ray instance of this process's own (even when `ray start` left a cluster address on
    this machine), listening on loopback only, whose processes end when this process ends, however
    it ends (a reaper watches it: Ray's agents outlive a killed driver otherwise)."""
    import ray
    from ray._private import ray_constants

    # Ray binds its servers to 127.0.0.1 only when it takes that as the node's address, which it
    # does for a single-machine instance where multi-node clusters are off; they are never needed here.
    multi_node = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    cpus = num_cpus or os.cpu_count() or 1
    try:
        # Idle workers beyond the soft limit are ended within a second; Tune's actors never take an
        # idle worker, so the confirmation's warm workers (``warm_workers``) need room beside them.
        ray.init(address="local", num_cpus=cpus, _system_config={"num_workers_soft_limit": 2 * cpus}, **_RAY_INIT)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = multi_node
    node = ray._private.worker._global_node
    pids = [str(p.process.pid) for procs in node.all_processes.values() for p in procs if p.process is not None]
    subprocess.Popen([sys.executable, "-m", "audit.search.reaper", str(os.getpid()), *pids], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_backend(study: Study, study_dir: Path) -> None:
    """Start what the runs need before the first one (the pipeline calls it while the teachers
    train): Ray, with its output in ray.log, Ray Tune's modules, and warm workers for the
    confirmation. Nothing for the local backend."""
    if study.backend == "local":
        return
    with ray_log(study_dir):
        ensure_ray(study)
        import ray.tune  # noqa: F401 - seconds of imports, taken now rather than before the first trial
        if not study.address:
            warm_workers(concurrency(study), study.all_methods)


def release_backend() -> threading.Thread | None:
    """Stop the Ray instance ``ensure_ray`` started, in a thread (its shutdown takes seconds, which
    the report's writing hides); join the thread before exiting. ``None`` when there is none."""
    if not _OWN_RAY:
        return None
    import ray

    _OWN_RAY.clear()
    thread = threading.Thread(target=ray.shutdown, name="ray-shutdown")
    thread.start()
    return thread


def _warm(methods: list[str]) -> int:
    from methods import get_method

    for method in methods:
        get_method(method)
    return os.getpid()


def warm_workers(count: int, methods: list[str]) -> list:
    """Start ``count`` Ray workers that import torch and the methods now, for the confirmation's
    tasks: Tune's actors end with the search, and a fresh worker's imports take seconds. Returns
    the tasks' references (each returns its worker's pid); nothing waits for them."""
    import ray

    # No CPU asked: they run beside whatever trains, and Ray schedules each on a worker of its own.
    task = ray.remote(num_cpus=0)(_warm)
    return [task.remote(list(methods)) for _ in range(count)]


class _LogFile(logging.FileHandler):
    """ray.log; a line it cannot write (a full disk) is dropped, not a traceback on the terminal:
    the study stops with one line saying why."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


@contextlib.contextmanager
def ray_log(study_dir: Path) -> Iterator[None]:
    """Send what Ray and Tune print (their loggers, and the driver's stderr, where Ray's C++ core
    writes too) to ``ray.log`` in the study folder instead of the terminal."""
    ray_logger = logging.getLogger("ray")
    streams = [h for h in ray_logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    handler = _LogFile(study_dir / RAY_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for h in streams:
        ray_logger.removeHandler(h)
    ray_logger.addHandler(handler)
    sys.stderr.flush()
    saved = os.dup(2)
    log = os.open(study_dir / RAY_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        ray_logger.removeHandler(handler)
        handler.close()
        for h in streams:
            ray_logger.addHandler(h)


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


def concurrency(study: Study) -> int:
    """How many trials run at once: one on the local backend; on Ray what fits (the cluster's room
    once joined, else this machine's), capped by --max-concurrent."""
    if study.backend == "local":
        return 1
    import ray

    fits = default_concurrency(study) if ray.is_initialized() else max(1, int((os.cpu_count() or 1) // study.cpus_per_trial))
    return min(fits, study.max_concurrent or fits)


def default_concurrency(study: Study) -> int:
    """As many trials as the Ray instance or cluster (not this machine) has room for."""
    import ray

    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", os.cpu_count() or 1) // study.cpus_per_trial)
    if study.gpus_per_trial > 0:
        fits = min(fits, int(resources.get("GPU", 0) // study.gpus_per_trial))
    return max(1, fits)


# ---------------------------------------------------------------------------------------------
# search trials and confirmation runs
# ---------------------------------------------------------------------------------------------


def search_trials(study: Study, study_dir: Path, searcher, total: int, specs: dict[str, RunSpec],  # noqa: ANN001
                  splits: Splits, teacher_states: dict | None) -> None:
    """Run ``total`` trials that ``searcher`` (Ray Tune's interface) hands out, until it says finished."""
    if study.backend == "local":
        with ray_log(study_dir):  # the searcher is Ray Tune's: what it logs goes to ray.log, not the terminal
            _search_local(study, searcher, specs, splits, teacher_states)
    else:
        _search_ray(study, study_dir, searcher, total, specs, splits, teacher_states)


def _search_local(study: Study, searcher, specs: dict[str, RunSpec], splits: Splits, teacher_states: dict | None) -> None:  # noqa: ANN001
    from ray.tune.search import Searcher

    device = pick_device(study.gpus_per_trial)
    while True:
        trial_id = uuid.uuid4().hex[:8]
        config = searcher.suggest(trial_id)
        if searcher.fatal is not None:
            raise searcher.fatal
        if config == Searcher.FINISHED or config is None:
            return
        spec = specs[config.pop("method")]
        n_val = len(splits.val)
        report = lambda e, m: searcher.on_trial_result(trial_id, {METRIC: with_objective(m, n_val)[METRIC], "training_iteration": e})  # noqa: E731
        searcher.on_trial_complete(trial_id, with_objective(guarded_run(config, spec, splits, teacher_states, report, device), n_val))
        if searcher.fatal is not None:
            raise searcher.fatal


def _search_ray(study: Study, study_dir: Path, searcher, total: int, specs: dict[str, RunSpec], splits: Splits,  # noqa: ANN001
                teacher_states: dict | None) -> None:
    from ray import tune
    from ray.tune import Callback, FailureConfig, RunConfig

    # Not at the top: Ray's workers import this module, and the drivers' module brings pandas.
    from audit.search.drivers import heartbeat_s

    class _Registry(Callback):
        """Hands the searcher Tune's trials, whose error files say why a crashed trial ended."""

        def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:  # noqa: ANN001
            searcher.tune_trials[trial.trial_id] = trial

        def __getstate__(self) -> dict:
            return {}

    with ray_log(study_dir):
        ensure_ray(study)
        # Tune's result grid looks for per-trial logger files we switched off; our journal holds the results.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        trainable = tune.with_resources(
            # Data and teacher weights go to the object store once, not pickled into every trial.
            tune.with_parameters(ray_trainable, specs=specs, refs=put_shared(splits, teacher_states), gpus=study.gpus_per_trial,
                                 beat_s=heartbeat_s(study)),
            {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial},
        )
        concurrent = study.max_concurrent or default_concurrency(study)
        # Tune's state files (tuner.pkl among them) are only for this driver to read.
        (study_dir / "ray").mkdir(mode=0o700, exist_ok=True)
        os.chmod(study_dir / "ray", 0o700)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=total, max_concurrent_trials=concurrent, reuse_actors=True),
            run_config=RunConfig(
                name=f"search-{uuid.uuid4().hex[:6]}", storage_path=str((study_dir / "ray").resolve()), verbose=0,
                failure_config=FailureConfig(max_failures=study.max_failures), callbacks=[_Registry()],
            ),
        )
        tuner.fit()
    if searcher.fatal is not None:
        raise searcher.fatal


def run_all(study: Study, study_dir: Path, runs: Iterable[tuple[dict, RunSpec]], splits: Splits,
            teacher_states: dict | None, on_result: Callable[[dict], None]) -> None:
    """Run each (config, spec) once and hand every record to ``on_result`` as it finishes."""
    runs = list(runs)
    if study.backend == "local":
        device = pick_device(study.gpus_per_trial)
        for config, spec in runs:
            on_result(guarded_run(config, spec, splits, teacher_states, None, device))
        return
    if not runs:
        return

    import ray

    with ray_log(study_dir):
        ensure_ray(study)
        remote = ray.remote(num_cpus=study.cpus_per_trial, num_gpus=study.gpus_per_trial)(remote_run)
        refs = put_shared(splits, teacher_states)
        futures = [remote.remote(config, spec, refs, study.gpus_per_trial) for config, spec in runs]
        while futures:
            ready, futures = ray.wait(futures, num_returns=1)
            on_result(ray.get(ready[0]))
