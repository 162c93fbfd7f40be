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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from audit.errors import AuditError, unknown

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


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------


def _finite_array(values: Sequence[float], what: str) -> np.ndarray:
    try:
        arr = np.asarray(list(values), dtype=float)
    except (TypeError, ValueError):
        raise AuditError(f"{what} must be numbers; got {list(values)!r}") from None
    if arr.ndim != 1:
        raise AuditError(f"{what} must be a flat list of numbers")
    if not np.all(np.isfinite(arr)):
        raise AuditError(f"{what} must be finite numbers; got {arr.tolist()}")
    return arr


def _check_level(alpha: float) -> None:
    if not (0.0 < alpha < 0.5):
        raise AuditError(f"alpha must be between 0 and 0.5 (exclusive); got {alpha}")


def _check_margin(margin: float) -> None:
    if not (math.isfinite(margin) and margin > 0):
        raise AuditError(f"margin must be a positive number of accuracy points; got {margin}")


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
    arr = _finite_array(runs, "runs")
    if arr.size == 0:
        raise AuditError("no runs given; pass at least one reproduced accuracy (two or more to test)")
    claimed, claimed_std, claimed_runs = _claim_from_registry(claimed, claimed_std, claimed_runs)
    _check_claim(claimed, claimed_std, claimed_runs)
    _check_margin(margin)
    _check_level(alpha)
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
    _check_margin(margin)
    _check_level(alpha)
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
    prob_improvement_ci_low: float  # percentile bootstrap
    prob_improvement_ci_high: float
    hedges_g: float
    claimed_gain: float | None
    claimed_gain_in_ci: bool | None
    p_below_claimed: float | None  # Welch, H1: true gain < claimed gain
    explanation: str

    def to_dict(self) -> dict[str, object]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _prob_improvement(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Share of (a_i, b_j) pairs with a_i > b_j, ties counting one half (vectorised on axis)."""
    a = np.moveaxis(np.asarray(a), axis, -1)[..., :, None]
    b = np.moveaxis(np.asarray(b), axis, -1)[..., None, :]
    return ((a > b).mean(axis=(-2, -1)) + 0.5 * (a == b).mean(axis=(-2, -1)))


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
                    claimed_gain: float | None = None, alpha: float = 0.05, n_boot: int = 10_000,
                    seed: int = 0) -> RelativeResult:
    """Does A beat B? Welch's t-test, P(A > B) with a bootstrap interval, Hedges' g, and the
    observed gain with its Welch interval next to ``claimed_gain`` when the paper gives one.

    The bootstrap resamples each method's runs independently (scipy.stats.bootstrap) with the
    percentile method: BCa's jackknife is unstable with the 3-10 runs typical here.
    """
    a = _finite_array(a_runs, "runs of method A")
    b = _finite_array(b_runs, "runs of method B")
    if a.size < 2 or b.size < 2:
        raise AuditError(f"comparing two methods needs at least 2 runs of each; got {a.size} and {b.size}")
    _check_level(alpha)
    if n_boot < 100:
        raise AuditError(f"n_boot must be at least 100; got {n_boot}")
    if claimed_gain is not None and not math.isfinite(claimed_gain):
        raise AuditError(f"claimed gain must be a finite number; got {claimed_gain}")
    welch = stats.ttest_ind(a, b, equal_var=False)
    ci = welch.confidence_interval(confidence_level=1 - alpha)
    p_greater = float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    gain = float(a.mean() - b.mean())
    poi = float(_prob_improvement(a, b))
    if np.ptp(np.concatenate([a, b])) == 0:
        poi_lo = poi_hi = poi  # every resample is identical
    else:
        # batch bounds memory: each resample compares all n_a * n_b pairs
        boot = stats.bootstrap((a, b), _prob_improvement, paired=False, vectorized=True,
                               n_resamples=n_boot, batch=max(1, 2_000_000 // (a.size * b.size)),
                               confidence_level=1 - alpha,
                               method="percentile", rng=np.random.default_rng(seed))
        poi_lo, poi_hi = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    in_ci = p_below = None
    if claimed_gain is not None:
        in_ci = bool(ci.low <= claimed_gain <= ci.high)
        shifted = stats.ttest_ind(a - claimed_gain, b, equal_var=False, alternative="less")
        p_below = float(shifted.pvalue)
    level = 1 - alpha
    text = (f"Gain {_signed(gain)} points ({level:.0%} CI {_signed(ci.low)} to {_signed(ci.high)}), "
            f"P(A > B) = {poi:.2f} [{poi_lo:.2f}, {poi_hi:.2f}], Hedges' g = {hedges_g(a, b):.2f}")
    if claimed_gain is not None:
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


# ---------------------------------------------------------------------------------------------
# many claims in one report
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# across architectures and data sets
# ---------------------------------------------------------------------------------------------


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
    _check_level(alpha)
    if not scores_by_task:
        raise AuditError("no tasks given to aggregate")
    if (baseline is None) != (teacher is None):
        raise AuditError("normalising needs both the baseline and the teacher accuracy of every task")
    tasks = list(scores_by_task)
    normed: list[np.ndarray] = []
    for task in tasks:
        x = _finite_array(scores_by_task[task], f"scores of task {task!r}")
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
