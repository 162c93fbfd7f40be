"""The claim's own noise and selection (issue 12, items 1, 2 and 4): the pivot's distributions
against closed forms and Monte Carlo, the models a verdict says it used, selection rules judged
under both epochs, and P(A > B)'s interval at few runs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from audit.errors import AuditError
from audit.judge import noise
from audit.judge.calibration import simulate
from audit.judge.claim import CODE, judge_batch, judge_claim
from audit.judge.claim_model import ClaimModel
from audit.judge.claim_power import power_shortfall, rates
from audit.judge.improvement import (
    MIN_RUNS,
    newcombe_interval,
    pooled_interval,
    prob_improvement,
)
from audit.judge.published import judge_published, selection_of
from audit.judge.relative import compare_methods

RNG_DRAWS = 400_000


# ---------------------------------------------------------------------------------------------
# the distributions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,mean,var", [(2, 1 / math.sqrt(math.pi), 1 - 1 / math.pi), (3, 0.846284, 0.559467),
                                         (5, 1.162964, 0.447534)])
def test_the_best_of_k_standard_normals(k: int, mean: float, var: float) -> None:
    # textbook values of the maximum of k standard normals (Harter 1961)
    got = noise.w_moments("best", k)
    assert got == pytest.approx((mean, var), abs=2e-5)


def test_the_tabulated_convolution_is_exact_where_a_closed_form_exists() -> None:
    # for a mean of k runs, mean(Z) - W is normal: the grid computation must agree with it
    grid, cdf = noise._d_cdf_table("mean", 3, 5)
    scale = math.sqrt(1 / 5 + 1 / 3)
    x = np.linspace(-3, 3, 61)
    assert np.interp(x, grid, cdf) == pytest.approx(stats.norm.cdf(x / scale), abs=2e-6)


def test_a_normal_pivot_is_students_t() -> None:
    p = noise.Pivot("mean", 4, 6, 5.0)
    assert p.normal and p.scale == pytest.approx(math.sqrt(1 / 6 + 1 / 4))
    assert p.ppf(0.05) == pytest.approx(stats.t.ppf(0.05, 5))
    assert p.cdf(1.3, shift=0.4) == pytest.approx(stats.nct.cdf(1.3, 5, 0.4 / p.scale))


@pytest.mark.parametrize("statistic,k,n,df", [("best", 5, 3, 2.0), ("best", 2, 10, 9.0), ("median", 5, 5, 4.0),
                                               ("median", 4, 3, 2.0), ("best", 3, 5, math.inf)])
def test_order_statistic_pivots_against_monte_carlo(statistic: str, k: int, n: int, df: float) -> None:
    rng = np.random.default_rng(k * 100 + n)
    x = rng.normal(size=(RNG_DRAWS, k))
    w = x.max(axis=1) if statistic == "best" else np.median(x, axis=1)
    z = rng.normal(size=(RNG_DRAWS, n)).mean(axis=1)
    s = np.sqrt(rng.chisquare(df, RNG_DRAWS) / df) if math.isfinite(df) else 1.0
    p = noise.Pivot(statistic, k, n, df)
    g = (z - w) / (s * p.scale)
    for q in (0.05, 0.5, 0.95):
        # quantile of a Monte Carlo sample: within a few of its standard errors
        assert abs(float(p.cdf(np.quantile(g, q))) - q) < 4 * math.sqrt(q * (1 - q) / RNG_DRAWS) + 1e-3
    assert abs(float(p.cdf(0.7, shift=0.5)) - np.mean((z - w + 0.5) / (s * p.scale) <= 0.7)) < 3e-3


# ---------------------------------------------------------------------------------------------
# how a claim is modelled, and what the verdict says of it
# ---------------------------------------------------------------------------------------------


RUNS = [72.5, 73.4, 72.8, 73.0]


@pytest.mark.parametrize("kwargs,phrase", [
    (dict(), "a single run (its number of runs is not stated: taken as 1"),
    (dict(claimed_runs=5), "the mean of 5 runs with the same seed spread as ours"),
    (dict(claimed_runs=5, claimed_std=0.3), "our 4 runs and the claim's stated std (4 df), 7 df"),
    (dict(claimed_runs=5, claimed_std=0.3, noise="welch"), "Hsu's df = min(n, k) - 1 = 3"),
    (dict(claimed_runs=5, statistic="best"), "the best of 5 seeds"),
    (dict(claimed_runs=5, statistic="median"), "the median of 5 runs"),
    (dict(noise="exact"), "taken as exact"),
    (dict(others=(2.0, 20)), "the study's other methods (20 df), 23 df"),
])
def test_every_verdict_says_how_the_claim_was_modelled(kwargs: dict, phrase: str) -> None:
    v = judge_claim(73.2, RUNS, **kwargs)
    assert phrase in v.model and "\n" not in v.model
    # and the batch core gives the same numbers as the one-claim path, row by row
    model = ClaimModel(kwargs.get("statistic", "mean"), kwargs.get("claimed_runs"), kwargs.get("noise", "shared"))
    res = judge_batch(np.array([RUNS]), 73.2, model, claimed_std=kwargs.get("claimed_std"), others=kwargs.get("others"))
    assert CODE[int(res["code"][0])] == v.verdict and res["ci_low"][0] == pytest.approx(v.ci_low)


def test_a_claimed_noise_widens_the_interval() -> None:
    exact, single, mean5 = (judge_claim(73.2, RUNS, noise="exact"), judge_claim(73.2, RUNS),
                            judge_claim(73.2, RUNS, claimed_runs=5))
    width = [v.ci_high - v.ci_low for v in (exact, mean5, single)]
    assert width == sorted(width) and width[2] > 2 * width[0]
    # se = s * sqrt(1/n + 1/k) with k = 1 when the number of runs is not stated
    assert single.se == pytest.approx(np.std(RUNS, ddof=1) * math.sqrt(1 / 4 + 1))


def test_best_of_k_corrects_for_selection() -> None:
    # our runs sit at 73 on average; a best of 5 seeds of the same method sits about 1.16 s higher
    runs = [72.6, 73.4, 72.8, 73.2, 73.0]
    s = float(np.std(runs, ddof=1))
    claimed = 73.0 + 1.163 * s
    v = judge_claim(claimed, runs, claimed_runs=5, statistic="best")
    assert v.raw_diff == pytest.approx(-1.163 * s, abs=1e-9)
    assert abs(v.diff) < 0.35 * s  # the median-unbiased estimate, near the truth 0
    assert v.ci_low < 0 < v.ci_high and "corrected for the claim being a best of seeds" in v.explanation


def test_a_true_best_of_k_claim_is_no_longer_declared_not_reproduced() -> None:
    """The issue's measurement: a claim that is the best of 5 seeds (spread 0.5) of a method exactly
    as good was NOT REPRODUCED 19 % of the time, best of 10 33 %."""
    for k in (5, 10):
        cell = simulate("best", k, 5, 0.5, 0.0, seed=k)
        assert cell.not_reproduced <= 0.05 and abs(cell.coverage - 0.9) <= 0.02


def test_welch_with_a_zero_std_and_identical_runs_is_decided() -> None:
    v = judge_claim(73.2, [73.2, 73.2, 73.2], claimed_std=0.0, claimed_runs=3, noise="welch")
    assert v.verdict == "REPRODUCED" and v.ci_low == v.ci_high == 0.0
    v = judge_claim(73.2, [72.0, 72.0, 72.0], claimed_std=0.0, claimed_runs=3, noise="welch")
    assert v.verdict == "NOT REPRODUCED" and math.isfinite(v.ci_low)


def test_power_with_a_claimed_std_is_what_the_verdict_does() -> None:
    """The issue: power_shortfall with a claimed std predicted 0.805 where a simulation of the
    verdict gave 0.735 (k = 3, n = 3). Now both the shared and the Welch model predict what the
    simulation of their own verdict measures."""
    for model in ("shared", "welch"):
        predicted = power_shortfall(1.5, n=3, sd=0.3, claimed_std=0.3, claimed_runs=3, noise=model)
        cell = simulate("mean_std", 3, 3, 0.3, -1.5, audits=8000, seed=11, noise=model)
        assert abs(cell.not_reproduced - predicted) < 4 * math.sqrt(predicted * (1 - predicted) / 8000)


def test_runs_needed_under_claim_noise() -> None:
    model = ClaimModel("mean", 1)
    v = judge_claim(73.2, [71.6, 71.9, 71.7])
    assert v.verdict in ("NOT REPRODUCED", "INCONCLUSIVE") and v.runs_needed is not None
    need = v.runs_needed
    got = rates(v.diff, need, v.spread, model, margin=0.5, alpha=0.05)["NOT REPRODUCED"]
    assert got >= 0.8
    if need > 2:
        assert rates(v.diff, need - 1, v.spread, model, margin=0.5, alpha=0.05)["NOT REPRODUCED"] < 0.8


@pytest.mark.parametrize("kwargs,message", [
    (dict(statistic="best"), "needs k"),
    (dict(statistic="mode", claimed_runs=3), "unknown claim statistic"),
    (dict(noise="bayes"), "unknown claim noise model"),
    (dict(noise="welch"), "welch noise model needs"),
    (dict(noise="welch", claimed_runs=5, claimed_std=0.3, statistic="best"), "welch noise model needs"),
])
def test_bad_models_are_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        judge_claim(73.2, RUNS, **kwargs)


# ---------------------------------------------------------------------------------------------
# selection rules of the registry
# ---------------------------------------------------------------------------------------------


def test_a_stated_rule_is_judged_once_an_unstated_one_under_both_epochs() -> None:
    curves = [[97.0, 98.0, 97.4], [97.2, 98.4, 97.5], [96.9, 98.1, 97.6]]  # best epochs ~0.6 above the last
    stated = selection_of("last_epoch", "stated", pd.NA)
    assert stated.epochs == ("last",) and stated.epoch_stated
    assumed = selection_of("last_epoch", "assumed (source states no rule)", pd.NA)
    assert assumed.epochs == ("last", "best") and "epoch not stated" in assumed.describe()
    assert selection_of("best_of_k_seeds", "stated", 5).statistic == "best"
    assert selection_of("median_of_k", "stated", 5).statistic == "median"
    # a claim at the best epochs' level: reproduced at the best epoch, not at the last one
    one = judge_published(98.3, curves, assumed, noise="exact", margin=0.5)
    assert one.by_epoch["best"].verdict == "REPRODUCED" and one.by_epoch["last"].verdict == "NOT REPRODUCED"
    assert one.differs and one.verdict == "INCONCLUSIVE"
    # where both epoch rules agree the verdict stands, with the larger of the two p-values
    both = judge_published(97.9, curves, assumed, noise="exact", margin=1.0)
    assert not both.differs and both.verdict == "REPRODUCED"
    assert both.p == pytest.approx(max(v.p_equivalence for v in both.by_epoch.values()))
    only = judge_published(98.3, curves, stated, noise="exact", margin=0.5)
    assert list(only.by_epoch) == ["last"] and only.verdict == "NOT REPRODUCED"


def test_registry_notes_a_model_cannot_use() -> None:
    curves = [[97.0, 98.0], [97.2, 98.4], [96.9, 98.1]]
    pv = judge_published(98.0, curves, selection_of("last_epoch", "stated", pd.NA), claimed_std=0.2, noise="welch")
    assert any("no number of runs" in n for n in pv.notes) and any("shared seed spread" in n for n in pv.notes)
    assert pv.by_epoch["last"].noise == "shared"


# ---------------------------------------------------------------------------------------------
# P(A > B)
# ---------------------------------------------------------------------------------------------


def test_three_runs_that_separate_from_three_no_longer_give_a_certain_interval() -> None:
    r = compare_methods([74.0, 74.2, 74.4], [72.0, 72.1, 72.3])
    assert r.prob_improvement == 1.0 and math.isnan(r.prob_improvement_ci_low)
    assert f"no interval below {MIN_RUNS} runs of each" in r.explanation
    r = compare_methods([74.0, 74.2, 74.4, 74.1], [72.0, 72.1, 72.3, 72.2])
    assert r.prob_improvement == 1.0 and 0.5 < r.prob_improvement_ci_low < 0.9 and r.prob_improvement_ci_high == 1.0


@pytest.mark.parametrize("m,n", [(4, 4), (5, 5), (6, 6), (10, 10), (4, 6), (5, 10)])
def test_newcombe_interval_covers_from_the_stated_number_of_runs(m: int, n: int) -> None:
    rng = np.random.default_rng(m * 31 + n)
    sims = 4000
    worst = 1.0
    for gap in (0.0, 0.5, 1.0, 2.0, 3.0):  # in seed standard deviations
        theta = stats.norm.cdf(gap / math.sqrt(2))
        est = prob_improvement(rng.normal(gap, 1, (sims, m)), rng.normal(0, 1, (sims, n)))
        values, where = np.unique(est, return_inverse=True)  # m * n pairs: few distinct estimates
        intervals = np.array([newcombe_interval(e, m, n, 0.95) for e in values])[where]
        worst = min(worst, float(np.mean((intervals[:, 0] <= theta) & (theta <= intervals[:, 1]))))
    assert worst >= 0.93  # within 2 points of the nominal 95 %


def test_pooled_interval_over_tasks_covers() -> None:
    rng = np.random.default_rng(5)
    sims, tasks, runs = 3000, 3, 3
    gaps = np.array([0.0, 1.0, 2.0])
    theta = float(np.mean(stats.norm.cdf(gaps / math.sqrt(2))))
    hits = 0
    for _ in range(sims):
        est = [float(prob_improvement(rng.normal(g, 1, runs), rng.normal(0, 1, runs))) for g in gaps]
        lo, hi = pooled_interval(est, [(runs, runs)] * tasks, 0.95)
        hits += lo <= theta <= hi
    assert hits / sims >= 0.93
