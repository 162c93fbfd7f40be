"""Statistics that judge a reproduced accuracy against a published claim (scipy.stats throughout).

Units are accuracy points (percent). Differences are always *reproduced minus claimed*, so a
negative difference is a shortfall.

Absolute claims (``judge_claim``)
---------------------------------
With ``d`` the true difference and ``m`` the margin (declared before looking at the runs):

* shortfall test  H0: d >= -m  vs  H1: d < -m      p_shortfall
* excess test     H0: d <= +m  vs  H1: d > +m      p_excess
* equivalence     two one-sided tests (TOST) of H0: |d| >= m,  p_equivalence = max of the two

Decision rule, each test at level ``alpha`` (the three rejections are mutually exclusive):

* ``NOT REPRODUCED`` iff the shortfall test rejects (p_shortfall < alpha);
* ``EXCEEDED``       iff the excess test rejects (p_excess < alpha);
* ``REPRODUCED``     iff the equivalence test rejects (p_equivalence < alpha);
* ``INCONCLUSIVE``   otherwise.

Equivalently, with the reported two-sided ``1 - 2*alpha`` t interval of ``d`` (90 % for the
default alpha): REPRODUCED iff the interval lies inside (-m, +m), NOT REPRODUCED iff it lies
entirely below -m, EXCEEDED iff entirely above +m. At the boundary d = -m the chance of a wrong
NOT REPRODUCED is exactly alpha; for a true claim (d = 0) it is far smaller.

The standard error is the one-sample t one (the claimed number is taken as an exact target) unless
the claim gives its own std and number of runs k, in which case it is Welch's with
Welch-Satterthwaite degrees of freedom from the summary statistics. A claim that is itself a
single run or an unreported mean carries seed noise this cannot see; the report says so.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from audit.errors import AuditError
from audit.judge.checks import check_level, check_margin, finite_array

# Default equivalence margin, in accuracy points. The seed-to-seed standard deviation of a CIFAR
# student is about 0.2-0.4 points, so a margin below ~0.5 could rarely be shown with 5 seeds
# (TOST needs |mean diff| + t*se < m), while published KD gains over the no-KD baseline are
# typically 1-3 points: a claim reproduced to within 0.5 keeps most of its claimed gain. Gains
# smaller than this (e.g. over classical KD) are judged by the relative tests, not by this margin.
DEFAULT_MARGIN = 0.5

# Power a "runs needed" figure aims for (the conventional 80 %).
TARGET_POWER = 0.8
# Beyond this many runs we say "more runs alone will not decide it".
MAX_RUNS = 10_000

VERDICTS = ("REPRODUCED", "NOT REPRODUCED", "EXCEEDED", "INCONCLUSIVE")
_CODE = {1: "REPRODUCED", 2: "NOT REPRODUCED", 3: "EXCEEDED", 0: "INCONCLUSIVE"}


def _check_claim(claimed: float, claimed_std: float | None, claimed_runs: int | None) -> None:
    if not math.isfinite(claimed):
        raise AuditError(f"claimed accuracy must be a finite number; got {claimed}")
    if claimed_runs is not None and claimed_runs < 1:
        raise AuditError(f"claimed runs must be at least 1; got {claimed_runs}")
    if claimed_std is not None:
        if not math.isfinite(claimed_std) or claimed_std < 0:
            raise AuditError(f"claimed std must be a non-negative number; got {claimed_std}")
        if claimed_runs is None or claimed_runs < 2:
            raise AuditError(f"a claimed std needs the claim's number of runs (at least 2); got {claimed_runs}")




# ---------------------------------------------------------------------------------------------
# the vectorised core (one row per audit) shared by judge_claim and the simulation tests
# ---------------------------------------------------------------------------------------------


def _welch_df(v1: np.ndarray, n1: np.ndarray, v2: float, n2: int) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom; v = variance of each mean (s^2/n)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))


def _moments(runs: np.ndarray, claimed: float, claimed_std: float | None,
             claimed_runs: int | None) -> tuple[np.ndarray, ...]:
    """mean, std (ddof 1), diff, se, df of each row of ``runs`` (shape: audits x runs)."""
    n = runs.shape[-1]
    mean = runs.mean(axis=-1)
    std = runs.std(axis=-1, ddof=1) if n >= 2 else np.full(mean.shape, np.nan)
    diff = mean - claimed
    var_mean = std**2 / n
    if claimed_std is not None:
        var_claim = claimed_std**2 / claimed_runs
        se = np.sqrt(var_mean + var_claim)
        df = _welch_df(var_mean, np.full(mean.shape, n), var_claim, claimed_runs)
    else:
        se = np.sqrt(var_mean)
        df = np.full(mean.shape, n - 1.0)
    return mean, std, diff, se, df


def _tstat(num: np.ndarray, se: np.ndarray) -> np.ndarray:
    # A zero standard error (identical runs, exact claim) makes the statistic +-inf; a zero
    # numerator over it sits exactly on the boundary and is scored as undecided (t = 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / se
    return np.where((se == 0) & (num == 0), 0.0, t)


def _decide(diff: np.ndarray, se: np.ndarray, df: np.ndarray, margin: float,
            alpha: float) -> dict[str, np.ndarray]:
    """The three one-sided tests, the 1-2*alpha interval and the verdict code of each row."""
    t_low = _tstat(diff + margin, se)  # large when clearly above -m
    t_high = _tstat(diff - margin, se)  # very negative when clearly below +m
    p_shortfall = stats.t.cdf(t_low, df)  # H1: d < -m
    p_excess = stats.t.sf(t_high, df)  # H1: d > +m
    p_equiv = np.maximum(stats.t.sf(t_low, df), stats.t.cdf(t_high, df))  # H1: |d| < m
    p_diff = 2 * stats.t.sf(np.abs(_tstat(diff, se)), df)
    tcrit = stats.t.ppf(1 - alpha, df)
    ci_low, ci_high = diff - tcrit * se, diff + tcrit * se
    code = np.zeros(np.shape(diff), dtype=int)
    code[p_equiv < alpha] = 1
    code[p_shortfall < alpha] = 2
    code[p_excess < alpha] = 3
    return {"p_equivalence": p_equiv, "p_shortfall": p_shortfall, "p_excess": p_excess,
            "p_difference": p_diff, "ci_low": ci_low, "ci_high": ci_high, "code": code}


def _power(diff: float, n: np.ndarray | int, sd: float, margin: float, alpha: float,
           claimed_std: float | None = None, claimed_runs: int | None = None) -> np.ndarray:
    """Probability that an audit with ``n`` runs reaches the verdict ``diff`` points towards.

    Non-central t: for a one-sided test the statistic (dhat -+ m)/se_hat follows nct(df, nc) with
    nc = (d -+ m)/se. For equivalence both one-sided tests must reject; their joint probability
    is bounded below by P(A) + P(B) - 1 (the usual TOST power approximation, tight once it is
    large). On the margin itself no number of runs decides, and the result is NaN.
    """
    n = np.asarray(n, dtype=float)
    var_mean = sd**2 / n
    if claimed_std is not None:
        var_claim = claimed_std**2 / claimed_runs
        se = np.sqrt(var_mean + var_claim)
        df = _welch_df(var_mean, n, var_claim, claimed_runs)
        df = np.where(np.isfinite(df), df, n - 1)
    else:
        se = np.sqrt(var_mean)
        df = n - 1
    tc = stats.t.ppf(1 - alpha, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        nc_low, nc_high = (diff + margin) / se, (diff - margin) / se
    if diff < -margin:
        power = stats.nct.cdf(-tc, df, nc_low)
    elif diff > margin:
        power = stats.nct.sf(tc, df, nc_high)
    elif abs(diff) < margin:
        power = np.clip(stats.nct.sf(tc, df, nc_low) + stats.nct.cdf(-tc, df, nc_high) - 1, 0, 1)
    else:
        return np.full(n.shape, np.nan)
    # zero spread: the verdict is certain as soon as there is a test at all
    return np.where(se == 0, 1.0, power)


def _runs_needed(diff: float, sd: float, margin: float, alpha: float, claimed_std: float | None,
                 claimed_runs: int | None, power: float = TARGET_POWER) -> int | None:
    """Smallest n >= 2 whose power (at the observed diff and spread) reaches ``power``.

    Power grows with n, so a bisection over [2, MAX_RUNS] needs ~14 evaluations. None when the
    observed difference sits on the margin or even MAX_RUNS runs would not do (e.g. the claim's
    own spread dominates the standard error).
    """
    if not (math.isfinite(diff) and math.isfinite(sd)) or abs(abs(diff) - margin) < 1e-12:
        return None

    def ok(k: int) -> bool:
        return bool(_power(diff, k, sd, margin, alpha, claimed_std, claimed_runs) >= power)

    if ok(2):
        return 2
    if not ok(MAX_RUNS):
        return None
    lo, hi = 2, MAX_RUNS  # ok(lo) false, ok(hi) true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


# ---------------------------------------------------------------------------------------------
# absolute claims
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The judgement of one claimed accuracy against reproduced runs (all in accuracy points)."""

    verdict: str
    claimed: float
    claimed_std: float | None
    claimed_runs: int | None
    mean: float
    std: float
    n: int
    diff: float  # mean - claimed
    se: float
    df: float
    ci_low: float  # two-sided (1 - 2*alpha) t interval of diff: the one the verdict reads
    ci_high: float
    ci_level: float
    margin: float
    alpha: float
    p_equivalence: float
    p_shortfall: float
    p_excess: float
    p_difference: float  # two-sided p of "no difference at all", for reference
    test: str
    runs_needed: int | None
    explanation: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _f(x: float) -> str:
    return f"{x:.2f}"


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _explain(v: dict[str, object]) -> str:
    n, mean, claimed, diff, m = v["n"], v["mean"], v["claimed"], v["diff"], v["margin"]
    runs = f"the mean of {n} runs ({_f(mean)})" if n != 1 else f"the single run ({_f(mean)})"
    if round(diff, 2) < 0:
        where = f"{_f(-diff)} points below the claimed {_f(claimed)}"
    elif round(diff, 2) > 0:
        where = f"{_f(diff)} points above the claimed {_f(claimed)}"
    else:
        where = f"equal to the claimed {_f(claimed)}"
    if n < 2:
        return (f"Inconclusive: {runs} is {where}, but one run cannot measure the spread "
                f"between seeds; give at least 2 runs.")
    ci = f"the {v['ci_level']:.0%} CI ({_signed(v['ci_low'])} to {_signed(v['ci_high'])})"
    verdict = v["verdict"]
    if verdict == "REPRODUCED":
        return f"Reproduced: {runs} is {where}, and {ci} lies within the ±{m:g}-point margin."
    if verdict == "NOT REPRODUCED":
        return (f"Not reproduced: {runs} is {where}; {ci} lies entirely below -{m:g} "
                f"(shortfall p = {v['p_shortfall']:.2g}).")
    if verdict == "EXCEEDED":
        return (f"Exceeded: {runs} is {where}; {ci} lies entirely above +{m:g} "
                f"(excess p = {v['p_excess']:.2g}).")
    need = v["runs_needed"]
    if need is not None:
        more = f"about {need} runs at this spread would decide it"
    elif abs(abs(diff) - m) < 1e-12:
        more = "the observed difference sits on the margin itself, so more runs may never decide it"
    else:
        more = "more runs alone cannot decide it because the claim's own spread dominates"
    return f"Inconclusive: {runs} is {where}; {ci} crosses the ±{m:g}-point margin, and {more}."


def _claim_from_registry(claimed: object, claimed_std: object,
                         claimed_runs: object) -> tuple[float, float | None, int | None]:
    """Registry rows give NaN / pandas NA where the source is silent: read those as None."""
    def missing(x: object) -> bool:
        if x is None:
            return True
        try:
            return bool(x != x)  # NaN is the one float unequal to itself
        except TypeError:
            return True  # pandas.NA: even its comparisons are missing

    try:
        value = float(claimed)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AuditError(f"claimed accuracy must be a number; got {claimed!r}") from None
    std = None if missing(claimed_std) else float(claimed_std)  # type: ignore[arg-type]
    runs = None if missing(claimed_runs) else int(claimed_runs)  # type: ignore[call-overload]
    return value, std, runs


def judge_claim(claimed: float, runs: Sequence[float], *, claimed_std: float | None = None,
                claimed_runs: int | None = None, margin: float = DEFAULT_MARGIN,
                alpha: float = 0.05) -> Verdict:
    """Judge a claimed accuracy against reproduced runs; see the module docstring for the rule.

    ``claimed_std`` (sample std of the claim's runs) requires ``claimed_runs`` >= 2 and switches
    to Welch's test from summary statistics; ``claimed_runs`` alone is recorded but the claim is
    then treated as exact. ``runs_needed`` is the smallest number of runs giving 80 % power to
    reach the verdict the observed difference points to, at the observed spread (non-central t).
    """
    arr = finite_array(runs, "runs")
    if arr.size == 0:
        raise AuditError("no runs given; pass at least one reproduced accuracy (two or more to test)")
    claimed, claimed_std, claimed_runs = _claim_from_registry(claimed, claimed_std, claimed_runs)
    _check_claim(claimed, claimed_std, claimed_runs)
    check_margin(margin)
    check_level(alpha)
    mean, std, diff, se, df = (float(x[0]) for x in _moments(arr[None, :], claimed, claimed_std, claimed_runs))
    res = {k: float(x[0]) for k, x in _decide(np.array([diff]), np.array([se]), np.array([df]),
                                                margin, alpha).items()}
    verdict = _CODE[int(res.pop("code"))] if arr.size >= 2 else "INCONCLUSIVE"
    sd_for_power = std if arr.size >= 2 else (claimed_std if claimed_std is not None else float("nan"))
    fields: dict[str, object] = dict(
        verdict=verdict, claimed=float(claimed), claimed_std=claimed_std, claimed_runs=claimed_runs,
        mean=mean, std=std, n=int(arr.size), diff=diff, se=se, df=df,
        ci_low=res["ci_low"], ci_high=res["ci_high"], ci_level=1 - 2 * alpha, margin=margin,
        alpha=alpha, p_equivalence=res["p_equivalence"], p_shortfall=res["p_shortfall"],
        p_excess=res["p_excess"], p_difference=res["p_difference"],
        test=("Welch t from summary statistics" if claimed_std is not None
              else "one-sample t (claim taken as exact)"),
        runs_needed=_runs_needed(diff, sd_for_power, margin, alpha, claimed_std, claimed_runs),
    )
    fields["explanation"] = _explain(fields)
    return Verdict(**fields)  # type: ignore[arg-type]


def power_shortfall(shortfall: float = 1.0, n: int = 5, sd: float = 0.3,
                    margin: float = DEFAULT_MARGIN, alpha: float = 0.05, *,
                    claimed_std: float | None = None, claimed_runs: int | None = None) -> float:
    """Power to return NOT REPRODUCED when the truth is ``shortfall`` points below the claim.

    ``n`` reproduced runs with seed standard deviation ``sd``; exact non-central t power of the
    shortfall test (H0: d >= -margin) at level ``alpha``. Below the margin this is <= alpha.
    """
    check_margin(margin)
    check_level(alpha)
    if n < 2:
        raise AuditError(f"power needs at least 2 runs; got {n}")
    if sd <= 0:
        raise AuditError(f"sd must be positive; got {sd}")
    _check_claim(0.0, claimed_std, claimed_runs)
    k = np.asarray(n, dtype=float)
    var_mean = sd**2 / k
    if claimed_std is not None:
        var_claim = claimed_std**2 / claimed_runs
        se, df = np.sqrt(var_mean + var_claim), _welch_df(var_mean, k, var_claim, claimed_runs)
    else:
        se, df = np.sqrt(var_mean), k - 1
    tc = stats.t.ppf(1 - alpha, df)
    return float(stats.nct.cdf(-tc, df, (-shortfall + margin) / se))
