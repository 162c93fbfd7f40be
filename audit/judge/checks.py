"""Checks on the numbers the statistics are given: one clear error line for anything else."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from audit.errors import AuditError


def finite_array(values: Sequence[float], what: str) -> np.ndarray:
    try:
        arr = np.asarray(list(values), dtype=float)
    except (TypeError, ValueError):
        raise AuditError(f"{what} must be numbers; got {list(values)!r}") from None
    if arr.ndim != 1:
        raise AuditError(f"{what} must be a flat list of numbers")
    if not np.all(np.isfinite(arr)):
        raise AuditError(f"{what} must be finite numbers; got {arr.tolist()}")
    return arr


def check_level(alpha: float) -> None:
    if not (0.0 < alpha < 0.5):
        raise AuditError(f"alpha must be between 0 and 0.5 (exclusive); got {alpha}")


def check_margin(margin: float) -> None:
    if not (math.isfinite(margin) and margin > 0):
        raise AuditError(f"margin must be a positive number of accuracy points; got {margin}")


