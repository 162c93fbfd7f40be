"""P(A > B): the chance that a random run of method A beats one of method B (ties count one
half), the Mann-Whitney statistic scaled to [0, 1], with an interval that holds at few runs.

The interval is Newcombe's score interval (method 5 of Newcombe 2006, "Confidence intervals for
an effect size measure based on the Mann-Whitney statistic. Part 2", Stat Med 25:559-573): all
theta whose distance from the estimate is at most z times the Hanley-McNeil standard error at
theta itself, with both sample sizes replaced by their mean. Unlike a percentile bootstrap (0.79
coverage at 3 runs against 3, and "1.00 [1.00, 1.00]" when 3 runs separate from 3) it stays
inside [0, 1] without collapsing. Measured here by simulation (normal runs, 4,000 per cell, 95 %
nominal): 0.89 at 3 runs of each, 0.93 or more from 4 of each, so below ``MIN_RUNS`` of either
method no interval is given.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

MIN_RUNS = 4  # fewest runs of each method for which the interval is shown
_THETA = np.linspace(0.0, 1.0, 20_001)


def prob_improvement(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Share of (a_i, b_j) pairs with a_i > b_j, ties counting one half (vectorised on ``axis``)."""
    a = np.moveaxis(np.asarray(a, float), axis, -1)[..., :, None]
    b = np.moveaxis(np.asarray(b, float), axis, -1)[..., None, :]
    return (a > b).mean(axis=(-2, -1)) + 0.5 * (a == b).mean(axis=(-2, -1))


def _variance(theta: np.ndarray, m: float, n: float) -> np.ndarray:
    """Hanley-McNeil variance of the estimate at theta, with m - 1 and n - 1 both replaced by
    (m + n)/2 - 1 (Newcombe's method 5)."""
    half = (m + n) / 2 - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return theta * (1 - theta) / (m * n) * (1 + half * ((1 - theta) / (2 - theta) + theta / (1 + theta)))


def score_interval(estimate: float, variance_at, level: float) -> tuple[float, float]:
    """All theta in [0, 1] with (estimate - theta)^2 <= z^2 * variance_at(theta)."""
    z = stats.norm.ppf(0.5 + level / 2)
    inside = (estimate - _THETA) ** 2 <= z**2 * variance_at(_THETA) + 1e-15
    if not inside.any():
        return float(estimate), float(estimate)
    idx = np.flatnonzero(inside)
    return float(_THETA[idx[0]]), float(_THETA[idx[-1]])


def newcombe_interval(estimate: float, m: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's score interval of P(A > B) from ``m`` runs of A and ``n`` of B."""
    return score_interval(estimate, lambda t: _variance(t, m, n), level)


def pooled_interval(estimates: list[float], sizes: list[tuple[int, int]], level: float = 0.95) -> tuple[float, float]:
    """Score interval of the average of independent P(A > B) estimates (one per task): the
    variance of the average at a common theta, sum_t V_t(theta) / T^2. Where the tasks' true
    values differ this overstates the variance (V is concave in theta): the interval is wider,
    never narrower."""
    t = len(estimates)
    mean = float(np.mean(estimates))

    def variance(theta: np.ndarray) -> np.ndarray:
        return sum(_variance(theta, m, n) for m, n in sizes) / t**2

    return score_interval(mean, variance, level)
