"""Relative claims: method A against method B (a KD method against no KD or classical KD), with
Welch's test, P(A > B) with Newcombe's interval (``audit.judge.improvement``), Hedges' g and the
gain with its interval (scipy.stats throughout)."""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import integrate, stats

from audit.errors import AuditError
from audit.judge.checks import check_level, finite_array
from audit.judge.improvement import MIN_RUNS, newcombe_interval, prob_improvement


def _signed(x: float) -> str:
    return f"{x:+.2f}"

# ---------------------------------------------------------------------------------------------
# relative claims: method A against method B
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelativeResult:
    """Method A against method B (e.g. a KD method against nokd), in accuracy points."""

    a_mean: float
    a_std: float
    a_n: int
    b_mean: float
    b_std: float
    b_n: int
    gain: float  # mean(A) - mean(B)
    gain_ci_low: float  # Welch (1 - alpha) interval
    gain_ci_high: float
    ci_level: float
    t_stat: float
    df: float
    p_two_sided: float  # Welch, H0: equal means
    p_greater: float  # Welch, H1: A better than B
    prob_improvement: float  # P(a random run of A beats one of B), ties count half
    prob_improvement_ci_low: float  # Newcombe's score interval; NaN below MIN_RUNS runs of either
    prob_improvement_ci_high: float
    hedges_g: float
    claimed_gain: float | None
    claimed_gain_in_ci: bool | None
    p_below_claimed: float | None  # Welch, H1: true gain < claimed gain
    explanation: str

    def to_dict(self) -> dict[str, object]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


class _NoTest:
    """Welch's result where it is undefined: every number NaN."""

    statistic = df = pvalue = low = high = math.nan


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Hedges' g: Cohen's d with pooled sd, times the exact small-sample correction
    J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)), df = n_a + n_b - 2."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    df = a.size + b.size - 2
    if a.size < 2 or b.size < 2:
        return float("nan")
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df)
    if pooled == 0:
        return float("nan")
    from scipy.special import gammaln

    j = math.exp(gammaln(df / 2) - gammaln((df - 1) / 2)) / math.sqrt(df / 2)
    return float(j * (a.mean() - b.mean()) / pooled)


def compare_methods(a_runs: Sequence[float], b_runs: Sequence[float], *,
                    claimed_gain: float | None = None, alpha: float = 0.05) -> RelativeResult:
    """Does A beat B? Welch's t-test, P(A > B) with Newcombe's score interval (none below
    ``MIN_RUNS`` runs of either method, where no interval keeps its level), Hedges' g, and the
    observed gain with its Welch interval next to ``claimed_gain`` when the paper gives one.
    """
    a = finite_array(a_runs, "runs of method A")
    b = finite_array(b_runs, "runs of method B")
    if a.size < 2 or b.size < 2:
        raise AuditError(f"comparing two methods needs at least 2 runs of each; got {a.size} and {b.size}")
    check_level(alpha)
    if claimed_gain is not None and not math.isfinite(claimed_gain):
        raise AuditError(f"claimed gain must be a finite number; got {claimed_gain}")
    flat = a.var(ddof=1) == 0 and b.var(ddof=1) == 0
    if flat:
        # No spread on either side leaves Welch's statistic undefined (scipy would call any difference
        # certain, p = 0): nothing is shown, as across tasks (audit.judge.across).
        welch = ci = shifted = _NoTest()
        p_greater = math.nan
    else:
        with warnings.catch_warnings():
            # scipy warns when one side's runs are all equal (their variance "loses precision"); the
            # test then rests on the other side's spread, as Welch's test may: not for the terminal.
            warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)
            welch = stats.ttest_ind(a, b, equal_var=False)
            ci = welch.confidence_interval(confidence_level=1 - alpha)
            p_greater = float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
            if claimed_gain is not None:
                shifted = stats.ttest_ind(a - claimed_gain, b, equal_var=False, alternative="less")
    gain = float(a.mean() - b.mean())
    poi = float(prob_improvement(a, b))
    poi_lo = poi_hi = math.nan
    if min(a.size, b.size) >= MIN_RUNS:
        poi_lo, poi_hi = newcombe_interval(poi, a.size, b.size, 1 - alpha)
    in_ci = p_below = None
    if claimed_gain is not None:
        in_ci = None if flat else bool(ci.low <= claimed_gain <= ci.high)
        p_below = float(shifted.pvalue)
    level = 1 - alpha
    poi_text = (f"[{poi_lo:.2f}, {poi_hi:.2f}]" if math.isfinite(poi_lo)
                else f"(no interval below {MIN_RUNS} runs of each)")
    interval = ("no interval: neither method's runs vary" if flat
                else f"{level:.0%} CI {_signed(ci.low)} to {_signed(ci.high)}")
    text = f"Gain {_signed(gain)} points ({interval}), P(A > B) = {poi:.2f} {poi_text}, Hedges' g = {hedges_g(a, b):.2f}"
    if claimed_gain is not None and not flat:
        text += (f"; the claimed gain {_signed(claimed_gain)} is "
                 f"{'inside' if in_ci else 'outside'} the interval")
    text += "."
    return RelativeResult(
        a_mean=float(a.mean()), a_std=float(a.std(ddof=1)), a_n=int(a.size),
        b_mean=float(b.mean()), b_std=float(b.std(ddof=1)), b_n=int(b.size), gain=gain,
        gain_ci_low=float(ci.low), gain_ci_high=float(ci.high), ci_level=level,
        t_stat=float(welch.statistic), df=float(welch.df), p_two_sided=float(welch.pvalue),
        p_greater=p_greater, prob_improvement=poi, prob_improvement_ci_low=poi_lo,
        prob_improvement_ci_high=poi_hi, hedges_g=hedges_g(a, b), claimed_gain=claimed_gain,
        claimed_gain_in_ci=in_ci, p_below_claimed=p_below, explanation=text)


def power_gain(gain: float, n: int, sd: float, *, alpha: float = 0.05, tests: int = 1) -> float:
    """Chance that a true gain of ``gain`` points is declared SUPPORTED: one-sided Welch at
    ``alpha / tests`` with ``n`` runs of each method, both with seed spread ``sd``.

    Exact for normal runs: with equal n, Welch's statistic is the pooled t (non-central t with
    2n - 2 df), while its critical value uses the Welch-Satterthwaite df, (n - 1) / (R^2 + (1 - R)^2)
    with R = S_a^2 / (S_a^2 + S_b^2) ~ Beta((n - 1)/2, (n - 1)/2) independent of the statistic; the
    power is the statistic's tail beyond that critical value, averaged over R. With ``tests``
    p-values adjusted together by Benjamini-Hochberg (or Holm), a p-value below alpha / tests is
    always rejected, so this is a lower bound of the report's power.
    """
    check_level(alpha)
    if n < 2:
        raise AuditError(f"power needs at least 2 runs of each method; got {n}")
    if not (math.isfinite(sd) and sd > 0):
        raise AuditError(f"sd must be a positive number of accuracy points; got {sd}")
    if tests < 1:
        raise AuditError(f"tests must be at least 1; got {tests}")
    df, ncp, level = 2 * n - 2, gain / (sd * math.sqrt(2 / n)), alpha / tests
    half = (n - 1) / 2

    def tail(r: float) -> float:
        welch_df = (n - 1) / (r**2 + (1 - r) ** 2)
        return stats.nct.sf(stats.t.ppf(1 - level, welch_df), df, ncp) * stats.beta.pdf(r, half, half)

    # Symmetric in R around 1/2: integrate one half, where the integrand is smooth.
    value, _ = integrate.quad(tail, 0.0, 0.5, limit=200)
    return float(min(1.0, 2 * value))


def seeds_for_power(gain: float, sd: float, *, power: float = 0.8, alpha: float = 0.05, tests: int = 1,
                    most: int = 1000) -> int | None:
    """The fewest runs of each method for ``power_gain`` to reach ``power`` (``None`` above ``most``)."""
    for n in range(2, most + 1):
        if power_gain(gain, n, sd, alpha=alpha, tests=tests) >= power:
            return n
    return None
