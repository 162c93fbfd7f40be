"""Statistics that judge a reproduced accuracy against a published claim (scipy.stats throughout).

Units are accuracy points (percent). Differences are always *reproduced minus claimed*, so a
negative difference is a shortfall.

Absolute claims (``judge_claim``)
---------------------------------
With ``d`` the true difference between the method's mean as we run it and as the paper ran it,
and ``m`` the margin (declared before looking at the runs, in ``study.toml``):

* shortfall test  H0: d >= -m  vs  H1: d < -m      p_shortfall
* excess test     H0: d <= +m  vs  H1: d > +m      p_excess
* equivalence     two one-sided tests (TOST) of H0: |d| >= m,  p_equivalence = max of the two

Decision rule, each test at level ``alpha`` (the three rejections are mutually exclusive):
``NOT REPRODUCED`` iff the shortfall test rejects, ``EXCEEDED`` iff the excess test rejects,
``REPRODUCED`` iff the equivalence test rejects, ``INCONCLUSIVE`` otherwise. Equivalently, with the
reported two-sided ``1 - 2*alpha`` interval of ``d`` (90 % for the default alpha): REPRODUCED iff
it lies inside (-m, +m), NOT REPRODUCED iff entirely below -m, EXCEEDED iff entirely above +m.

The claim is a random variable too (``audit.judge.claim_model``): a single run, the mean, median
or best of k runs, with the seed spread it shares with ours; or, as explicit options, with its own
stated std (Welch) or as an exact constant. The tests read the pivot of that model
(``audit.judge.noise``), so at the boundary d = -m a wrong NOT REPRODUCED has probability alpha
exactly under the model, and the interval covers d with probability 1 - 2*alpha.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from audit.errors import AuditError
from audit.judge.checks import check_level, check_margin, finite_array
from audit.judge.claim_model import ClaimModel, describe, estimate
from audit.judge.claim_power import runs_needed

# Default equivalence margin, in accuracy points. The seed-to-seed standard deviation of a CIFAR
# student is about 0.2-0.4 points, so a margin below ~0.5 could rarely be shown with 5 seeds,
# while published KD gains over the no-KD baseline are typically 1-3 points: a claim reproduced to
# within 0.5 keeps most of its claimed gain. Gains smaller than this (e.g. over classical KD) are
# judged by the relative tests, not by this margin.
DEFAULT_MARGIN = 0.5
DEFAULT_ALPHA = 0.05

VERDICTS = ("REPRODUCED", "NOT REPRODUCED", "EXCEEDED", "INCONCLUSIVE")
CODE = {1: "REPRODUCED", 2: "NOT REPRODUCED", 3: "EXCEEDED", 0: "INCONCLUSIVE"}


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


def _ratio(num: np.ndarray, se: np.ndarray) -> np.ndarray:
    # A zero standard error (identical runs, no claimed spread) makes the statistic +-inf; a zero
    # numerator over it sits exactly on the boundary and is scored as undecided.
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / se
    return np.where((se == 0) & (num == 0), 0.0, t)


def judge_batch(runs: np.ndarray, claimed: float | np.ndarray, model: ClaimModel, *,
                claimed_std: float | np.ndarray | None = None, others: tuple[float, float] | None = None,
                margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA) -> dict[str, np.ndarray]:
    """The verdict of each row of ``runs`` (audits x runs) against ``claimed`` (one per row or one
    for all): the vectorised core of ``judge_claim`` and of the calibration simulations.

    Returns arrays ``mean, std, raw_diff, diff, se, df, sigma, p_shortfall, p_excess,
    p_equivalence, p_difference, ci_low, ci_high, code`` (``CODE`` maps the verdict codes), and
    the ``pivot`` and ``spread`` used. ``diff`` is the estimate of d: the raw difference corrected
    for the claim's selection (a best of k seeds sits above its method's mean); ``se`` its scale.
    """
    runs = np.asarray(runs, float)
    n = runs.shape[-1]
    spread, pivot, se = estimate(model, runs, claimed_std, others)
    mean = runs.mean(axis=-1)
    std = runs.std(axis=-1, ddof=1) if n >= 2 else np.full(mean.shape, np.nan)
    raw = mean - np.asarray(claimed, float)
    q_lo, q_hi = pivot.ppf(alpha), pivot.ppf(1 - alpha)
    t_low, t_high, t_zero = _ratio(raw + margin, se), _ratio(raw - margin, se), _ratio(raw, se)
    p_shortfall = pivot.cdf(t_low)  # small when clearly below -m
    p_excess = pivot.sf(t_high)
    p_equiv = np.maximum(pivot.sf(t_low), pivot.cdf(t_high))
    p_diff = np.minimum(1.0, 2 * np.minimum(pivot.cdf(t_zero), pivot.sf(t_zero)))
    code = np.zeros(np.shape(raw), dtype=int)
    code[p_equiv < alpha] = 1
    code[p_shortfall < alpha] = 2
    code[p_excess < alpha] = 3
    undecidable = np.logical_or(not spread.df >= 1, ~np.isfinite(se))
    code[np.broadcast_to(undecidable, code.shape)] = 0
    return {"mean": mean, "std": std, "raw_diff": raw, "diff": raw - se * pivot.median, "se": se,
            "df": np.full(mean.shape, spread.df), "sigma": spread.sigma, "p_shortfall": p_shortfall,
            "p_excess": p_excess, "p_equivalence": p_equiv, "p_difference": p_diff,
            "ci_low": raw - se * q_hi, "ci_high": raw - se * q_lo, "code": code, "pivot": pivot, "spread": spread}


@dataclass(frozen=True)
class Verdict:
    """The judgement of one claimed accuracy against reproduced runs (all in accuracy points)."""

    verdict: str
    claimed: float
    claimed_std: float | None
    claimed_runs: int | None
    statistic: str  # the claim as a statistic of its runs: mean, median or best
    noise: str  # how its noise was treated: shared, welch or exact
    model: str  # how the claim was modelled, in words
    mean: float
    std: float
    n: int
    raw_diff: float  # mean - claimed
    diff: float  # the estimate of d: raw_diff corrected for the claim's selection (best of k)
    se: float
    df: float
    spread: float  # the seed spread the verdict used (pooled where the model says so)
    ci_low: float  # two-sided (1 - 2*alpha) interval of d: the one the verdict reads
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

    @property
    def p(self) -> float:
        """The p-value of the test behind the verdict (the smallest of the three when undecided)."""
        return {"REPRODUCED": self.p_equivalence, "NOT REPRODUCED": self.p_shortfall, "EXCEEDED": self.p_excess
                }.get(self.verdict, min(self.p_equivalence, self.p_shortfall, self.p_excess))


def _f(x: float) -> str:
    return f"{x:.2f}"


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _explain(v: dict[str, object]) -> str:
    n, mean, claimed, raw, m = v["n"], v["mean"], v["claimed"], v["raw_diff"], v["margin"]
    runs = f"the mean of {n} runs ({_f(mean)})" if n != 1 else f"the single run ({_f(mean)})"
    if round(raw, 2) < 0:
        where = f"{_f(-raw)} points below the claimed {_f(claimed)}"
    elif round(raw, 2) > 0:
        where = f"{_f(raw)} points above the claimed {_f(claimed)}"
    else:
        where = f"equal to the claimed {_f(claimed)}"
    if not (v["df"] >= 1 and math.isfinite(v["se"])):
        return (f"Inconclusive: {runs} is {where}, but one run cannot measure the spread "
                f"between seeds; give at least 2 runs.")
    ci = f"the {v['ci_level']:.0%} CI of the difference ({_signed(v['ci_low'])} to {_signed(v['ci_high'])})"
    if v["statistic"] == "best" and v["noise"] != "exact" and (v["claimed_runs"] or 1) > 1:
        ci += ", corrected for the claim being a best of seeds,"
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
    elif abs(abs(v["diff"]) - m) < 1e-12:
        more = "the observed difference sits on the margin itself, so more runs may never decide it"
    else:
        more = "more runs alone cannot decide it because the claim's own spread dominates"
    return f"Inconclusive: {runs} is {where}; {ci} crosses the ±{m:g}-point margin, and {more}."


def _missing(x: object) -> bool:
    if x is None:
        return True
    try:
        return bool(x != x)  # NaN is the one float unequal to itself
    except TypeError:
        return True  # pandas.NA: even its comparisons are missing


def claim_from_registry(claimed: object, claimed_std: object,
                        claimed_runs: object) -> tuple[float, float | None, int | None]:
    """Registry rows give NaN / pandas NA where the source is silent: read those as None."""
    try:
        value = float(claimed)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AuditError(f"claimed accuracy must be a number; got {claimed!r}") from None
    std = None if _missing(claimed_std) else float(claimed_std)  # type: ignore[arg-type]
    runs = None if _missing(claimed_runs) else int(claimed_runs)  # type: ignore[call-overload]
    return value, std, runs


_TESTS = {"shared": "t on the claim's pivot (one seed spread for the claim and our runs)",
          "welch": "Welch t from summary statistics, Hsu's df",
          "exact": "one-sample t (claim taken as exact)"}


def judge_claim(claimed: float, runs: Sequence[float], *, claimed_std: float | None = None,
                claimed_runs: int | None = None, statistic: str = "mean", noise: str = "shared",
                others: tuple[float, float] | None = None, margin: float = DEFAULT_MARGIN,
                alpha: float = DEFAULT_ALPHA) -> Verdict:
    """Judge a claimed accuracy against reproduced runs; see the module docstring for the rule.

    ``statistic`` (mean, median, best) of ``claimed_runs`` runs (not stated: taken as one run) and
    ``noise`` (shared, welch, exact: ``audit.judge.claim_model``) say how the claim came about.
    ``claimed_std`` (sample std of the claim's runs) requires ``claimed_runs`` >= 2; ``others`` is
    (sum of squared deviations, degrees of freedom) of the study's other methods' runs, to pool
    the seed spread with. ``runs_needed`` is the smallest number of runs giving 80 % power to reach
    the verdict the estimate points to, at the estimated spread, under the same model.
    """
    arr = finite_array(runs, "runs")
    if arr.size == 0:
        raise AuditError("no runs given; pass at least one reproduced accuracy (two or more to test)")
    claimed, claimed_std, claimed_runs = claim_from_registry(claimed, claimed_std, claimed_runs)
    _check_claim(claimed, claimed_std, claimed_runs)
    check_margin(margin)
    check_level(alpha)
    model = ClaimModel(statistic, claimed_runs, noise)
    res = judge_batch(arr[None, :], claimed, model, claimed_std=claimed_std, others=others, margin=margin, alpha=alpha)
    one = {k: float(np.asarray(x).ravel()[0]) for k, x in res.items() if k not in ("pivot", "spread")}
    spread = res["spread"]
    sigma = one["sigma"] if math.isfinite(one["sigma"]) else (claimed_std if claimed_std is not None else math.nan)
    fields: dict[str, object] = dict(
        verdict=CODE[int(one["code"])], claimed=float(claimed), claimed_std=claimed_std, claimed_runs=claimed_runs,
        statistic=statistic, noise=noise, model=describe(model, spread),
        mean=one["mean"], std=one["std"], n=int(arr.size), raw_diff=one["raw_diff"], diff=one["diff"],
        se=one["se"], df=spread.df, spread=one["sigma"], ci_low=one["ci_low"], ci_high=one["ci_high"],
        ci_level=1 - 2 * alpha, margin=margin, alpha=alpha, p_equivalence=one["p_equivalence"],
        p_shortfall=one["p_shortfall"], p_excess=one["p_excess"], p_difference=one["p_difference"],
        test=_TESTS[noise],
        runs_needed=runs_needed(one["diff"], sigma, model, margin=margin, alpha=alpha, claimed_std=claimed_std,
                                extra_df=(others[1] if others else 0)),
    )
    if not (spread.df >= 1):
        for key in ("se", "ci_low", "ci_high", "p_equivalence", "p_shortfall", "p_excess", "p_difference"):
            fields[key] = math.nan
    fields["explanation"] = _explain(fields)
    return Verdict(**fields)  # type: ignore[arg-type]
