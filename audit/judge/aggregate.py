"""One method across several tasks (architecture pairs, data sets): the interquartile mean of
normalised scores with a stratified bootstrap interval, as rliable reports it."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from audit.errors import AuditError
from audit.judge.checks import check_level, finite_array


@dataclass(frozen=True)
class AggregateResult:
    """Interquartile mean of normalised scores across tasks, with a stratified bootstrap CI."""

    iqm: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_tasks: int
    n_runs: int
    normalisation: str
    task_means: dict[str, float]


def _iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    # The middle 50 %: scipy trims floor(25 %) of the values from each end.
    return stats.trim_mean(x, 0.25, axis=axis)


def aggregate_iqm(scores_by_task: Mapping[str, Sequence[float]], *,
                  baseline: Mapping[str, float] | None = None,
                  teacher: Mapping[str, float] | None = None, alpha: float = 0.05,
                  n_boot: int = 5_000, seed: int = 0) -> AggregateResult:
    """Interquartile mean (IQM) of one method's runs pooled across tasks (architecture pairs or
    data sets), with a stratified percentile bootstrap interval.

    Scores are normalised per task as (acc - baseline) / (teacher - baseline): 0 is the no-KD
    student, 1 the teacher, so tasks of different difficulty share one scale. Without
    ``baseline``/``teacher`` the scores are taken as already normalised. The bootstrap resamples
    runs with replacement within each task (a task with one run stays fixed), as rliable does;
    tasks with more runs weigh more in the pooled IQM.
    """
    check_level(alpha)
    if not scores_by_task:
        raise AuditError("no tasks given to aggregate")
    if (baseline is None) != (teacher is None):
        raise AuditError("normalising needs both the baseline and the teacher accuracy of every task")
    tasks = list(scores_by_task)
    normed: list[np.ndarray] = []
    for task in tasks:
        x = finite_array(scores_by_task[task], f"scores of task {task!r}")
        if x.size == 0:
            raise AuditError(f"task {task!r} has no runs")
        if baseline is not None and teacher is not None:
            if task not in baseline or task not in teacher:
                raise AuditError(f"task {task!r} lacks a baseline or teacher accuracy to normalise with")
            span = teacher[task] - baseline[task]
            if not math.isfinite(span) or span == 0:
                raise AuditError(f"task {task!r}: teacher and baseline accuracy must differ to normalise")
            x = (x - baseline[task]) / span
        normed.append(x)
    pooled = np.concatenate(normed)
    rng = np.random.default_rng(seed)
    resampled = np.concatenate(
        [x[rng.integers(0, x.size, size=(n_boot, x.size))] for x in normed], axis=1)
    boot = _iqm(resampled, axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return AggregateResult(
        iqm=float(_iqm(pooled)), ci_low=float(lo), ci_high=float(hi), ci_level=1 - alpha,
        n_tasks=len(tasks), n_runs=int(pooled.size),
        normalisation=("(acc - nokd) / (teacher - nokd)" if baseline is not None else "none (given normalised)"),
        task_means={t: float(x.mean()) for t, x in zip(tasks, normed)})
