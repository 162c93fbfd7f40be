"""Many tests in one report: p-values adjusted together (Benjamini-Hochberg or Holm)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from audit.errors import AuditError, unknown

ADJUSTMENTS = ("bh", "holm")


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down: the i-th smallest p times (m - i + 1), made monotone, capped at 1."""
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out


def adjust_pvalues(p: Sequence[float], method: str = "bh") -> np.ndarray:
    """Adjust p-values for multiple comparisons: Benjamini-Hochberg (false discovery rate, via
    scipy.stats.false_discovery_control) or Holm (family-wise error). NaN entries (tests that
    could not run) stay NaN and do not count towards the number of tests."""
    if method not in ADJUSTMENTS:
        raise unknown("p-value adjustment", method, ADJUSTMENTS)
    arr = np.asarray(list(p), dtype=float)
    out = np.full(arr.shape, np.nan)
    ok = ~np.isnan(arr)
    if np.any((arr[ok] < 0) | (arr[ok] > 1)):
        raise AuditError(f"p-values must lie in [0, 1]; got {arr.tolist()}")
    if ok.any():
        out[ok] = stats.false_discovery_control(arr[ok], method="bh") if method == "bh" else _holm(arr[ok])
    return out
