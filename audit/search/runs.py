"""One run as Ray's workers execute it (a search trial through Ray Tune, a confirmation run as a
task) and as the local backend does, with a failure recorded rather than raised. Ray's workers
import this module, so it imports neither pandas nor Ray Tune at the top.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from audit.engine.data import Splits
from audit.engine.trial import RunSpec, pick_device, run_trial
from audit.search.objective import METRIC, with_objective


def guarded_run(config: dict, spec: RunSpec, splits: Splits, teacher_states: dict | None,
                on_epoch: Callable[[int, dict], None] | None, device) -> dict:  # noqa: ANN001
    """``run_trial``, with an exception it raises recorded as a failed run (its type and message)
    under every backend alike: it is deterministic, so retrying would only fail again."""
    t0 = time.perf_counter()
    try:
        return run_trial(config, spec, splits, teacher_states, on_epoch, device)
    except Exception as exc:  # noqa: BLE001 - the study goes on; the record says what happened
        message = str(exc).strip().splitlines()
        return {
            "method": spec.method, "seed": spec.seed, "config": dict(config), "status": "failed",
            "reason": f"{type(exc).__name__}: {message[0][:300] if message else ''}".rstrip(": "),
            METRIC: None, "wall_s": time.perf_counter() - t0, "budget_hash": spec.budget_hash,
        }


_FETCHED: dict[str, object] = {}  # this worker's copies of the study's data and teacher weights, by object
_FETCHED_MAX = 4  # a worker may serve several studies in one Ray instance (`audit reproduce`)


def fetch(refs: list) -> tuple[Splits, dict | None]:
    """The data and the teacher weights behind ``refs`` (ObjectRefs), fetched once per worker:
    deserialising a teacher's ~100 tensors took 29 ms a run, the data 2 ms (measured on a Ray
    worker), against 1.1-2.4 s for a main-job trial. Runs only read them."""
    import ray

    out = []
    for ref in refs:
        key = ref.hex()
        if key not in _FETCHED:
            if len(_FETCHED) >= _FETCHED_MAX:
                _FETCHED.clear()
            _FETCHED[key] = ray.get(ref)
        out.append(_FETCHED[key])
    return out[0], out[1]


def put_shared(splits: Splits, teacher_states: dict | None) -> list:
    """The data and the teacher weights in Ray's object store, once per study phase; handed to
    runs inside a list, so that Ray does not resolve (and deserialise) them for every run."""
    import ray

    return [ray.put(splits), ray.put(teacher_states)]


def ray_trainable(config: dict, specs: dict[str, RunSpec] = None, refs: list | None = None,
                  gpus: float = 0.0, beat_s: float = 0.0) -> None:
    import ray
    from ray import tune

    splits, teacher_states = fetch(refs)
    config = dict(config)
    spec = specs[config.pop("method")]
    node = ray.get_runtime_context().get_node_id()  # which node ran it (hostname alone is ambiguous)
    last = [time.monotonic()]

    def on_epoch(epoch: int, metrics: dict) -> None:
        # An epoch's result only carries the trial's heartbeat (the searcher tells Optuna nothing
        # else before the end): sent when one is due, not for every epoch of a seconds-long trial.
        # The last epoch arrives in the final, complete record.
        if epoch < spec.recipe.epochs and time.monotonic() - last[0] >= beat_s:
            last[0] = time.monotonic()
            tune.report({METRIC: with_objective(metrics, n_val)[METRIC], "epoch": epoch, "train_loss": metrics["train_loss"]})

    # A failed run (NaN, OOM, an exception) is reported, not raised: it is deterministic, so a retry
    # would waste the budget; Tune's FailureConfig retries only crashes (a lost worker or node).
    n_val = len(splits.val)
    record = guarded_run(config, spec, splits, teacher_states, on_epoch, pick_device(gpus))
    tune.report({**with_objective(record, n_val), "node_id": node})


def remote_run(config: dict, spec: RunSpec, refs: list, gpus: float) -> dict:
    import ray

    splits, teacher_states = fetch(refs)
    node = ray.get_runtime_context().get_node_id()  # which node ran it, as for search trials
    return {**guarded_run(config, spec, splits, teacher_states, None, pick_device(gpus)), "node_id": node}
