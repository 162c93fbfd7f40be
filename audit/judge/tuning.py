"""How a result depends on the tuning budget: the expected best of n trials (Dodge et al. 2019,
"Show Your Work"), and t intervals of a mean accuracy."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sstats

from audit.errors import AuditError

RANK_CI = 0.95  # interval of each method's mean test accuracy in the ranking


def expected_max(values: Sequence[float], n: int | Sequence[int] | None = None) -> np.ndarray:
    """Expected best score of ``n`` trials drawn at random (with replacement) from ``values``.

    Dodge et al. 2019, "Show Your Work": with the N observed scores sorted v_1 <= ... <= v_N,
    E[max of n] = sum_i v_i * ((i/N)^n - ((i-1)/N)^n). ``n`` defaults to 1..N; the result has
    one entry per n. Ties need no special care: the weights telescope over equal values.
    """
    v = np.sort(np.asarray(list(values), dtype=float))
    if v.size == 0:
        raise AuditError("expected_max needs at least one score")
    if not np.all(np.isfinite(v)):
        raise AuditError("expected_max needs finite scores")
    ns = np.arange(1, v.size + 1) if n is None else np.atleast_1d(np.asarray(n))
    if np.any(ns < 1):
        raise AuditError(f"the number of trials must be at least 1; got {ns.tolist()}")
    return _max_weights(v.size, ns) @ v


def expected_max_std(values: Sequence[float], n: int | Sequence[int] | None = None) -> np.ndarray:
    """Standard deviation of the best of ``n`` random trials (the band Dodge et al. draw)."""
    v = np.sort(np.asarray(list(values), dtype=float))
    ns = np.arange(1, v.size + 1) if n is None else np.atleast_1d(np.asarray(n))
    w = _max_weights(v.size, ns)
    mean = w @ v
    return np.sqrt(np.maximum(w @ v**2 - mean**2, 0.0))


def _max_weights(size: int, ns: np.ndarray) -> np.ndarray:
    """P(the best of n draws is the i-th smallest of ``size`` values), one row per n."""
    i = np.arange(1, size + 1)
    ns = ns.astype(float)[:, None]
    return (i / size) ** ns - ((i - 1) / size) ** ns


def mean_ci(x: Sequence[float], level: float = RANK_CI) -> tuple[float, float]:
    """t interval of the mean, clipped to [0, 100]; NaNs when fewer than two runs."""
    a = np.asarray(list(x), float)
    if a.size < 2:
        return (math.nan, math.nan)
    se = a.std(ddof=1) / math.sqrt(a.size)
    t = sstats.t.ppf(0.5 + level / 2, a.size - 1)
    # an accuracy lies in [0, 100]: with two or three seeds the t interval can overshoot it
    return (max(0.0, float(a.mean() - t * se)), min(100.0, float(a.mean() + t * se)))
