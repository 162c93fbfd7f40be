"""One method across several tasks (architecture pairs, data sets), as rliable reports it
(Agarwal et al. 2021): the interquartile mean (IQM) of per-run scores with a stratified bootstrap
interval, the probability of improvement over a reference, and performance profiles.

rliable itself does not install against this project's pandas (its ``arch`` dependency, pinned
below 8, fails to import with pandas 3), and scipy.stats.bootstrap needs two runs in every sample
(a task may have one) with a BCa jackknife that is unstable at 2-3 runs per task; the stratified
percentile bootstrap rliable uses is a few lines of numpy here. A score is a run's gain over the
reference's mean on its task, in accuracy points, or that gain over the teacher's (normalised: 0 is
the reference, 1 the teacher); the bootstrap resamples the method's and the reference's runs
within each task, so the reference's own seed noise is in the interval too.

With 2-5 runs per task a percentile interval is too narrow (the bootstrap variance of a mean of n
runs is (n - 1)/n of the true one): measured here, 0.78-0.90 coverage for a nominal 95 % at 2-3
runs on 2-3 tasks. The intervals are therefore Hesterberg's expanded percentile intervals
("What teachers should know about the bootstrap", 2015): the tail probability is the normal one of
sqrt(n/(n-1)) * t(df), with df = the sum over tasks of min(runs of the method, runs of the
reference) - 1; measured 0.93-0.96 coverage from 3 runs of each on 2-6 tasks (0.91-0.92 when df
also counts the reference's runs). Below ``MIN_RUNS`` no interval is given.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from audit.errors import AuditError
from audit.judge.checks import check_level, finite_array
from audit.judge.improvement import pooled_interval, prob_improvement

N_BOOT = 2_000
MIN_RUNS = 3  # fewest runs of the method and of the reference on every task for an interval


@dataclass(frozen=True)
class AggregateResult:
    """Interquartile mean of scores across tasks, with a stratified bootstrap CI."""

    iqm: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_tasks: int
    n_runs: int
    normalisation: str
    task_means: dict[str, float]


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    # The middle 50 %: scipy trims floor(25 %) of the values from each end.
    return stats.trim_mean(x, 0.25, axis=axis)


def _resample(x: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    return x[rng.integers(0, x.size, size=(n_boot, x.size))]


def expanded_quantiles(boot: np.ndarray, alpha: float, df: int) -> tuple[np.ndarray, np.ndarray]:
    """Hesterberg's expanded percentile interval of bootstrap replicates (first axis): the
    percentiles at the normal tail of sqrt(n/(n-1)) * t_(1 - alpha/2, df), n = df + 1."""
    z = math.sqrt((df + 1) / df) * stats.t.ppf(1 - alpha / 2, df)
    tail = float(stats.norm.sf(z))
    lo, hi = np.quantile(boot, [tail, 1 - tail], axis=0)
    return lo, hi


def _df(pairs: Mapping[str, Pair]) -> int | None:
    """Degrees of freedom of the expansion, summed over tasks; None below MIN_RUNS of either anywhere."""
    if min(min(p.runs.size, p.ref.size) for p in pairs.values()) < MIN_RUNS:
        return None
    return sum(min(p.runs.size, p.ref.size) - 1 for p in pairs.values())


def aggregate_iqm(scores_by_task: Mapping[str, Sequence[float]], *,
                  baseline: Mapping[str, float] | None = None,
                  teacher: Mapping[str, float] | None = None, alpha: float = 0.05,
                  n_boot: int = 5_000, seed: int = 0) -> AggregateResult:
    """IQM of one method's runs pooled across tasks, with a stratified percentile bootstrap interval.

    Scores are normalised per task as (acc - baseline) / (teacher - baseline) when both are given
    (the baseline taken as a constant); otherwise taken as already normalised. The bootstrap
    resamples runs within each task (a task with one run stays fixed), as rliable does.
    """
    check_level(alpha)
    if not scores_by_task:
        raise AuditError("no tasks given to aggregate")
    if (baseline is None) != (teacher is None):
        raise AuditError("normalising needs both the baseline and the teacher accuracy of every task")
    normed: list[np.ndarray] = []
    for task, values in scores_by_task.items():
        x = finite_array(values, f"scores of task {task!r}")
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
    rng = np.random.default_rng(seed)
    boot = iqm(np.concatenate([_resample(x, rng, n_boot) for x in normed], axis=1), axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    pooled = np.concatenate(normed)
    return AggregateResult(
        iqm=float(iqm(pooled)), ci_low=float(lo), ci_high=float(hi), ci_level=1 - alpha,
        n_tasks=len(normed), n_runs=int(pooled.size),
        normalisation=("(acc - nokd) / (teacher - nokd)" if baseline is not None else "none (given normalised)"),
        task_means={t: float(x.mean()) for t, x in zip(scores_by_task, normed)})


@dataclass(frozen=True)
class Pair:
    """One task's runs of a method and of the reference it is scored against, and the teacher's
    accuracy on that task (needed only to normalise)."""

    runs: np.ndarray
    ref: np.ndarray
    teacher: float = math.nan


def _scores(method: np.ndarray, ref: np.ndarray, teacher: float, normalise: bool) -> np.ndarray:
    """Gain over the reference's mean (the last axis holds the runs), optionally over the teacher's."""
    base = ref.mean(axis=-1, keepdims=True)
    gain = method - base
    return gain / (teacher - base) if normalise else gain


def scores(pairs: Mapping[str, Pair], normalise: bool = False) -> dict[str, np.ndarray]:
    """Each task's per-run scores."""
    return {t: _scores(p.runs, p.ref, p.teacher, normalise) for t, p in pairs.items()}


def check_normalisable(pairs: Mapping[str, Pair]) -> None:
    """Normalising by the teacher needs a teacher clearly above the reference on every task."""
    for task, p in pairs.items():
        if not math.isfinite(p.teacher):
            raise AuditError(f"task {task!r} has no teacher accuracy (teacher.json) to normalise with; use gains in points")
        if p.teacher - p.ref.mean() < 0.5:
            raise AuditError(f"task {task!r}: the teacher ({p.teacher:.2f} %) is not clearly above the reference "
                             f"({p.ref.mean():.2f} %), so scores over their gap are unstable; use gains in points")


def gain_iqm(pairs: Mapping[str, Pair], *, normalise: bool = False, alpha: float = 0.05, n_boot: int = N_BOOT,
             seed: int = 0) -> tuple[float, float, float]:
    """(IQM, low, high): the interquartile mean of every run's score across tasks and its
    stratified expanded percentile bootstrap interval (both the method's and the reference's runs
    resampled within each task); no interval below ``MIN_RUNS`` runs of either on a task."""
    check_level(alpha)
    usable = {t: p for t, p in pairs.items() if p.runs.size and p.ref.size}
    if not usable:
        return math.nan, math.nan, math.nan
    point = float(iqm(np.concatenate(list(scores(usable, normalise).values()))))
    df = _df(usable)
    if df is None:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boot = np.concatenate([_scores(_resample(p.runs, rng, n_boot), _resample(p.ref, rng, n_boot), p.teacher, normalise)
                           for p in usable.values()], axis=1)
    lo, hi = expanded_quantiles(iqm(boot, axis=1), alpha, df)
    return point, float(lo), float(hi)


def improvement(pairs: Mapping[str, Pair], *, alpha: float = 0.05, min_runs: int = 2) -> tuple[float, float, float]:
    """(P(method > reference) averaged over tasks, low, high): Newcombe's score interval of the
    average (``audit.judge.improvement.pooled_interval``); no interval when a task has fewer than
    ``min_runs`` runs of either."""
    usable = {t: p for t, p in pairs.items() if p.runs.size and p.ref.size}
    if not usable:
        return math.nan, math.nan, math.nan
    est = [float(prob_improvement(p.runs, p.ref)) for p in usable.values()]
    if min(min(p.runs.size, p.ref.size) for p in usable.values()) < min_runs:
        return float(np.mean(est)), math.nan, math.nan
    lo, hi = pooled_interval(est, [(p.runs.size, p.ref.size) for p in usable.values()], 1 - alpha)
    return float(np.mean(est)), lo, hi


def profile(pairs: Mapping[str, Pair], taus: np.ndarray, *, normalise: bool = False, alpha: float = 0.05,
            n_boot: int = N_BOOT, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Performance profile (rliable's score distribution): for each threshold tau, the share of
    runs scoring above it, averaged over tasks, with a stratified expanded percentile bootstrap
    band (none below ``MIN_RUNS`` runs)."""
    usable = {t: p for t, p in pairs.items() if p.runs.size and p.ref.size}
    taus = np.asarray(taus, float)
    if not usable:
        nan = np.full(taus.shape, np.nan)
        return nan, nan, nan
    point = np.mean([(s[:, None] > taus).mean(axis=0) for s in scores(usable, normalise).values()], axis=0)
    df = _df(usable)
    if df is None:
        return point, np.full(taus.shape, np.nan), np.full(taus.shape, np.nan)
    rng = np.random.default_rng(seed)
    boot = np.mean([(_scores(_resample(p.runs, rng, n_boot), _resample(p.ref, rng, n_boot), p.teacher,
                             normalise)[..., None] > taus).mean(axis=1) for p in usable.values()], axis=0)
    lo, hi = expanded_quantiles(boot, alpha, df)
    return point, lo, hi
