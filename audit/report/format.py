"""Numbers and configurations as the report's tables show them: a missing or non-finite value
is a dash, never ``nan``."""
from __future__ import annotations

import math
import re

import numpy as np


def finite(x: object) -> bool:
    """A real, finite number (a bool is not a number here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x: object, spec: str = ".2f") -> str:
    """A number for a table; missing or non-finite values are a dash."""
    if x is None:
        return "—"
    if isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool):
        if not math.isfinite(float(x)):
            return "—"
        out = format(x, spec)
        # -0.004 rounds to "-0.00": a sign the reader would take for a (tiny) loss
        return re.sub(r"^-(?=0(\.0*)?$)", "+" if "+" in spec else "", out)
    return str(x)


def fmt_p(p: object) -> str:
    if not finite(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_big(x: float, unit: str = "") -> str:
    """1.2 G, 3.4 T: compute totals span many orders of magnitude."""
    if not finite(x):
        return "—"
    for div, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f} {prefix}{unit}"
    return f"{x:.0f} {unit}".strip()


def fmt_config(config: dict) -> str:
    """A configuration as ``name=value`` pairs in name order, floats to three significant digits."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))
