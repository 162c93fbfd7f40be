"""Power of an absolute verdict, and the runs a verdict would need: read off the same pivot the
verdict uses (``audit.judge.noise``), so exact under the claim's model rather than a normal
approximation; for Welch's statistic an integral over both variance estimates."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from audit.errors import AuditError
from audit.judge.checks import check_level, check_margin
from audit.judge.claim_model import ClaimModel
from audit.judge.noise import Pivot, s_nodes

# Power a "runs needed" figure aims for (the conventional 80 %).
TARGET_POWER = 0.8
# Beyond this many runs we say "more runs alone will not decide it".
MAX_RUNS = 10_000


def _target(diff: float, margin: float) -> str | None:
    if diff < -margin:
        return "NOT REPRODUCED"
    if diff > margin:
        return "EXCEEDED"
    if abs(diff) < margin:
        return "REPRODUCED"
    return None  # on the margin itself no number of runs decides


def _welch_rates(d: float, n: int, sd: float, k: int, margin: float, alpha: float,
                 claimed_std: float) -> dict[str, float]:
    """Welch's statistic (d_hat -+ m) / sqrt(s^2/n + s_c^2/k) against Hsu's t: a normal over
    sqrt(a S1^2 + b S2^2), integrated over both chi variables."""
    var_r, var_c = sd**2 / n, claimed_std**2 / k
    total = var_r + var_c
    df = min(n, k) - 1
    q_lo, q_hi = stats.t.ppf(alpha, df), stats.t.ppf(1 - alpha, df)
    s1, w1 = s_nodes(float(n - 1))
    s2, w2 = s_nodes(float(k - 1))
    r = np.sqrt((var_r * s1[:, None] ** 2 + var_c * s2[None, :] ** 2) / total)
    w = w1[:, None] * w2[None, :]
    d_low, d_high = (d + margin) / math.sqrt(total), (d - margin) / math.sqrt(total)
    return {"NOT REPRODUCED": float((stats.norm.cdf(q_lo * r - d_low) * w).sum()),
            "EXCEEDED": float((stats.norm.sf(q_hi * r - d_high) * w).sum()),
            "REPRODUCED": float((np.maximum(stats.norm.cdf(q_lo * r - d_high) - stats.norm.cdf(q_hi * r - d_low), 0.0)
                                 * w).sum())}


def rates(d: float, n: int, sd: float, model: ClaimModel, *, margin: float, alpha: float,
          claimed_std: float | None = None, extra_df: float = 0) -> dict[str, float]:
    """The probability of each decided verdict when the true difference is ``d`` and the seed
    spread ``sd``, for an audit with ``n`` runs; ``extra_df`` is the degrees of freedom the spread
    estimate gets beyond our runs (the study's other methods pooled in)."""
    if model.noise == "welch":
        if claimed_std is None:
            raise AuditError("the welch noise model needs the claim's std")
        if sd == 0 and claimed_std == 0:
            return {v: float(v == (_target(d, margin) or "")) for v in ("NOT REPRODUCED", "EXCEEDED", "REPRODUCED")}
        return _welch_rates(d, n, sd, model.runs, margin, alpha, claimed_std)
    if sd == 0:
        return {v: float(v == (_target(d, margin) or "")) for v in ("NOT REPRODUCED", "EXCEEDED", "REPRODUCED")}
    df = n - 1 + extra_df
    if model.noise == "shared" and claimed_std is not None and model.runs >= 2:
        df += model.runs - 1
    pivot = Pivot(model.statistic, model.noise_k, n, float(df))
    q_lo, q_hi = pivot.ppf(alpha), pivot.ppf(1 - alpha)
    shift_low, shift_high = (d + margin) / sd, (d - margin) / sd
    return {"NOT REPRODUCED": float(pivot.cdf(q_lo, shift=shift_low)),
            "EXCEEDED": float(1.0 - pivot.cdf(q_hi, shift=shift_high)),
            "REPRODUCED": pivot.band_probability(q_hi, q_lo, shift_low, shift_high)}


def power(diff: float, n: int, sd: float, model: ClaimModel, *, margin: float, alpha: float,
          claimed_std: float | None = None, extra_df: float = 0) -> float:
    """Probability that an audit with ``n`` runs reaches the verdict the true difference ``diff``
    points to (NaN on the margin itself)."""
    target = _target(diff, margin)
    if target is None:
        return math.nan
    return rates(diff, n, sd, model, margin=margin, alpha=alpha, claimed_std=claimed_std, extra_df=extra_df)[target]


def runs_needed(diff: float, sd: float, model: ClaimModel, *, margin: float, alpha: float,
                claimed_std: float | None = None, extra_df: float = 0, target: float = TARGET_POWER) -> int | None:
    """Smallest n >= 2 whose power (at the estimated difference and spread) reaches ``target``.

    Power grows with n, so a bisection over [2, MAX_RUNS] needs ~14 evaluations. None when the
    estimate sits on the margin or even MAX_RUNS runs would not do (the claim's own noise, which
    more runs of ours cannot shrink, dominates the standard error).
    """
    if not (math.isfinite(diff) and math.isfinite(sd)) or _target(diff, margin) is None or sd < 0:
        return None
    if model.noise == "welch" and claimed_std is None:
        return None

    def ok(k: int) -> bool:
        return power(diff, k, sd, model, margin=margin, alpha=alpha, claimed_std=claimed_std, extra_df=extra_df) >= target

    if ok(2):
        return 2
    if not ok(MAX_RUNS):
        return None
    lo, hi = 2, MAX_RUNS  # ok(lo) false, ok(hi) true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def power_shortfall(shortfall: float = 1.0, n: int = 5, sd: float = 0.3, margin: float = 0.5,
                    alpha: float = 0.05, *, claimed_std: float | None = None, claimed_runs: int | None = None,
                    statistic: str = "mean", noise: str = "shared") -> float:
    """Power to return NOT REPRODUCED when the method truly runs ``shortfall`` points below the claim.

    ``n`` reproduced runs with seed standard deviation ``sd``; the claim is ``statistic`` of
    ``claimed_runs`` runs (one when not given) under the ``noise`` model, with ``claimed_std`` when
    it states one. Exact under the model; at the margin it equals alpha, below it is smaller.
    """
    check_margin(margin)
    check_level(alpha)
    if n < 2:
        raise AuditError(f"power needs at least 2 runs; got {n}")
    if not (math.isfinite(sd) and sd > 0):
        raise AuditError(f"sd must be positive; got {sd}")
    model = ClaimModel(statistic, claimed_runs, noise)
    return rates(-shortfall, n, sd, model, margin=margin, alpha=alpha, claimed_std=claimed_std)["NOT REPRODUCED"]
