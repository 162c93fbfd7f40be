"""Statistics: calibration by simulation, and agreement with scipy and hand-worked values.

Simulations are vectorised through the same core ``judge_claim`` uses (checked row by row on a
sample), so thousands of audits take a fraction of a second.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from audit.errors import AuditError
from audit.judge import claim
from audit.judge.aggregate import aggregate_iqm
from audit.judge.claim import DEFAULT_MARGIN, judge_batch, judge_claim
from audit.judge.claim_model import ClaimModel
from audit.judge.claim_power import TARGET_POWER, power_shortfall, runs_needed
from audit.judge.multiple import adjust_pvalues
from audit.judge.relative import compare_methods, hedges_g

B = 4000  # simulated audits per check
ALPHA = 0.05
CLAIM, SD, N = 73.0, 0.3, 5
EXACT = ClaimModel(noise="exact")


def sim_se(p: float, b: int = B) -> float:
    return math.sqrt(p * (1 - p) / b)


def simulate(true_diff: float, *, n: int = N, sd: float = SD, claim_k: int | None = None,
             claim_sd: float = SD, seed: int = 0):
    """B audits: n reproduced runs around claim + true_diff. Without ``claim_k`` the claim is a
    constant judged as exact; with it, the mean (and std) of k runs drawn around CLAIM, judged
    with the spread they share with ours."""
    rng = np.random.default_rng(seed)
    runs = rng.normal(CLAIM + true_diff, sd, size=(B, n))
    if claim_k is None:
        return runs, CLAIM, None, judge_batch(runs, CLAIM, EXACT, margin=DEFAULT_MARGIN, alpha=ALPHA)
    paper_runs = rng.normal(CLAIM, claim_sd, size=(B, claim_k))
    claimed, cstd = paper_runs.mean(axis=1), paper_runs.std(axis=1, ddof=1)
    res = judge_batch(runs, claimed, ClaimModel("mean", claim_k), claimed_std=cstd, margin=DEFAULT_MARGIN, alpha=ALPHA)
    return runs, claimed, cstd, res


def test_vectorised_core_is_what_judge_claim_returns():
    runs, _, _, res = simulate(-0.4, n=4)
    for i in range(40):
        v = judge_claim(CLAIM, runs[i], noise="exact")
        assert v.verdict == claim.CODE[int(res["code"][i])]
        assert v.p_shortfall == pytest.approx(res["p_shortfall"][i])
        assert v.ci_low == pytest.approx(res["ci_low"][i])


@pytest.mark.parametrize("claim_k", [None, 5])
def test_true_claim_is_rarely_not_reproduced(claim_k):
    _, _, _, res = simulate(0.0, claim_k=claim_k)
    rate = np.mean(res["code"] == 2)
    assert rate <= ALPHA + 3 * sim_se(ALPHA)


@pytest.mark.parametrize("claim_k", [None, 5])
def test_not_reproduced_rate_is_alpha_at_the_margin(claim_k):
    # the least favourable true difference still inside H0: the test is exact under the model
    _, _, _, res = simulate(-DEFAULT_MARGIN, claim_k=claim_k, seed=1)
    rate = np.mean(res["code"] == 2)
    assert rate <= ALPHA + 3 * sim_se(ALPHA)
    assert rate >= ALPHA - 3 * sim_se(ALPHA)


@pytest.mark.parametrize("claim_k", [None, 5])
def test_exceeded_rate_is_alpha_at_the_upper_margin(claim_k):
    _, _, _, res = simulate(+DEFAULT_MARGIN, claim_k=claim_k, seed=2)
    assert abs(np.mean(res["code"] == 3) - ALPHA) <= 3 * sim_se(ALPHA)


@pytest.mark.parametrize("claim_k,true_diff", [(None, 0.0), (None, -0.7), (5, 0.2), (3, -1.0)])
def test_interval_covers_the_true_difference_at_nominal_level(claim_k, true_diff):
    _, _, _, res = simulate(true_diff, claim_k=claim_k, seed=3)
    level = 1 - 2 * ALPHA
    cover = np.mean((res["ci_low"] <= true_diff) & (true_diff <= res["ci_high"]))
    assert abs(cover - level) <= 3 * sim_se(level)


def test_equivalence_rate_is_at_most_alpha_just_outside_the_margin():
    _, _, _, res = simulate(-DEFAULT_MARGIN, seed=4)
    assert np.mean(res["code"] == 1) <= ALPHA + 3 * sim_se(ALPHA)


def test_power_increases_with_runs():
    powers = [power_shortfall(1.0, n=k, noise="exact") for k in range(2, 31)]
    assert all(b > a for a, b in zip(powers, powers[1:]))
    assert powers[-1] > 0.999


def test_power_figure_for_readme_matches_simulation():
    power = power_shortfall(shortfall=1.0, n=5, sd=0.3, noise="exact")
    assert power == pytest.approx(0.916, abs=0.001)
    _, _, _, res = simulate(-1.0, seed=5)
    assert abs(np.mean(res["code"] == 2) - power) <= 3 * sim_se(power)


def test_power_below_the_margin_is_at_most_alpha():
    for noise in ("exact", "shared"):
        assert power_shortfall(shortfall=DEFAULT_MARGIN, noise=noise) == pytest.approx(ALPHA)
        assert power_shortfall(shortfall=0.0, noise=noise) < ALPHA


@pytest.mark.parametrize("observed_diff", [-0.15, -0.8])
def test_runs_needed_gives_the_promised_power(observed_diff):
    need = runs_needed(observed_diff, SD, EXACT, margin=DEFAULT_MARGIN, alpha=ALPHA)
    assert need is not None and need > 2
    _, _, _, res = simulate(observed_diff, n=need, seed=6)
    decided = np.mean(res["code"] == (1 if abs(observed_diff) < DEFAULT_MARGIN else 2))
    assert decided >= TARGET_POWER - 3 * sim_se(TARGET_POWER)
    _, _, _, res = simulate(observed_diff, n=need - 1, seed=7)  # and it is the smallest such n
    assert np.mean(res["code"] != 0) < TARGET_POWER + 3 * sim_se(TARGET_POWER)


def test_welch_statistic_matches_scipy_with_hsu_degrees_of_freedom():
    runs = [72.1, 72.9, 72.4, 73.3, 72.6, 72.8]
    v = judge_claim(73.4, runs, claimed_std=0.45, claimed_runs=4, noise="welch")
    ref = st.ttest_ind_from_stats(np.mean(runs), np.std(runs, ddof=1), len(runs), 73.4, 0.45, 4,
                                  equal_var=False)
    assert v.diff / v.se == pytest.approx(ref.statistic)
    assert v.df == 3  # min(n, k) - 1, not Welch-Satterthwaite's estimate
    assert v.p_difference == pytest.approx(2 * st.t.sf(abs(ref.statistic), 3))
    assert v.test.startswith("Welch")


def test_shared_spread_with_a_stated_std_is_the_pooled_two_sample_t():
    runs = [72.1, 72.9, 72.4, 73.3, 72.6, 72.8]
    v = judge_claim(73.4, runs, claimed_std=0.45, claimed_runs=4)
    ref = st.ttest_ind_from_stats(np.mean(runs), np.std(runs, ddof=1), len(runs), 73.4, 0.45, 4, equal_var=True)
    assert v.diff / v.se == pytest.approx(ref.statistic) and v.df == 8
    assert v.p_difference == pytest.approx(ref.pvalue)


def test_one_sample_matches_scipy():
    runs = [72.1, 72.9, 72.4, 73.3, 72.6]
    v = judge_claim(73.4, runs, noise="exact")
    ref = st.ttest_1samp(runs, 73.4)
    assert v.p_difference == pytest.approx(ref.pvalue)
    # the shortfall test is the one-sample test shifted by the margin
    shifted = st.ttest_1samp(np.array(runs) + DEFAULT_MARGIN, 73.4, alternative="less")
    assert v.p_shortfall == pytest.approx(shifted.pvalue)


@pytest.mark.parametrize("runs,verdict", [
    ([73.1, 73.3, 72.9, 73.2, 73.0], "REPRODUCED"),
    ([71.5, 71.8, 71.6, 71.9, 71.7], "NOT REPRODUCED"),
    ([74.5, 74.8, 74.6, 74.9, 74.7], "EXCEEDED"),
    ([72.5, 73.4, 72.8], "INCONCLUSIVE"),
])
def test_verdicts_and_one_line_explanations(runs, verdict):
    v = judge_claim(73.2, runs, noise="exact")
    assert v.verdict == verdict
    assert "\n" not in v.explanation
    assert v.explanation.lower().startswith(verdict.lower().split()[0])
    assert v.runs_needed is not None
    if verdict == "INCONCLUSIVE":
        assert v.runs_needed > len(runs) and str(v.runs_needed) in v.explanation


def test_interval_and_verdict_agree():
    v = judge_claim(73.2, [73.1, 73.3, 72.9, 73.2, 73.0])
    assert -v.margin < v.ci_low < v.ci_high < v.margin and v.ci_level == pytest.approx(0.9)


def test_one_run_is_inconclusive_and_says_why():
    v = judge_claim(73.2, [70.0])
    assert v.verdict == "INCONCLUSIVE" and "at least 2 runs" in v.explanation


def test_claim_spread_can_make_more_runs_useless():
    v = judge_claim(73.2, [72.5, 73.4, 72.8], claimed_std=2.0, claimed_runs=2)
    assert v.verdict == "INCONCLUSIVE" and v.runs_needed is None
    assert "claim's own spread" in v.explanation


def test_identical_runs_are_decided():
    assert judge_claim(73.2, [73.2, 73.2, 73.2]).verdict == "REPRODUCED"
    assert judge_claim(73.2, [71.0, 71.0]).verdict == "NOT REPRODUCED"


def test_to_dict_is_json_ready():
    d = judge_claim(73.2, [70.0]).to_dict()
    assert d["std"] is None and d["verdict"] == "INCONCLUSIVE"


@pytest.mark.parametrize("kwargs,message", [
    (dict(runs=[]), "no runs"),
    (dict(runs=[73.0, float("nan")]), "finite"),
    (dict(runs=[73.0, 72.0], claimed_std=-0.1, claimed_runs=3), "non-negative"),
    (dict(runs=[73.0, 72.0], claimed_std=0.3), "number of runs"),
    (dict(runs=[73.0, 72.0], claimed_std=0.3, claimed_runs=1), "number of runs"),
    (dict(runs=[73.0, 72.0], margin=0.0), "margin"),
    (dict(runs=[73.0, 72.0], alpha=0.6), "alpha"),
])
def test_bad_input_is_one_clear_error(kwargs, message):
    with pytest.raises(AuditError, match=message):
        judge_claim(73.0, **kwargs)


# --- relative claims -------------------------------------------------------------------------


def test_prob_improvement_of_identical_samples_is_one_half():
    x = [70.1, 70.5, 69.8, 70.2]
    r = compare_methods(x, x)
    assert r.prob_improvement == 0.5 and r.gain == 0


def test_prob_improvement_of_identical_distributions_is_near_one_half():
    rng = np.random.default_rng(8)
    a, b = rng.normal(70, 0.3, 150), rng.normal(70, 0.3, 150)
    r = compare_methods(a, b)
    se = math.sqrt((a.size + b.size + 1) / (12 * a.size * b.size))  # null sd of the AUC
    assert abs(r.prob_improvement - 0.5) < 3 * se
    assert r.prob_improvement_ci_low < 0.5 < r.prob_improvement_ci_high


def test_hedges_g_against_hand_computation():
    # means 5 and 3, both variances 2.5 -> pooled sd sqrt(2.5) = 1.58114, d = 2 / 1.58114 = 1.26491;
    # df = 8: J = Gamma(4) / (sqrt(4) Gamma(3.5)) = 6 / (2 * 3.32335) = 0.902703; g = 1.14184
    assert hedges_g([3, 4, 5, 6, 7], [1, 2, 3, 4, 5]) == pytest.approx(1.14184, abs=1e-5)
    assert hedges_g([1, 2, 3, 4, 5], [3, 4, 5, 6, 7]) == pytest.approx(-1.14184, abs=1e-5)


def test_compare_methods_welch_gain_and_claimed_gain():
    a, b = [73.1, 73.3, 72.9, 73.2, 73.0], [72.1, 72.3, 72.5, 72.2, 72.6]
    r = compare_methods(a, b, claimed_gain=1.5)
    ref = st.ttest_ind(a, b, equal_var=False)
    assert r.p_two_sided == pytest.approx(ref.pvalue) and r.df == pytest.approx(ref.df)
    assert r.gain == pytest.approx(0.76)
    assert r.gain_ci_low < 0.76 < r.gain_ci_high < 1.5
    assert r.claimed_gain_in_ci is False and r.p_below_claimed < 0.05
    assert r.prob_improvement == 1.0
    assert "outside" in r.explanation
    assert compare_methods(a, b, claimed_gain=0.8).claimed_gain_in_ci is True


def test_runs_that_do_not_vary_on_one_side_are_tested_quietly_and_on_both_not_at_all():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's "precision loss" warning would reach the user's terminal
        one = compare_methods([96.67, 96.67, 96.67], [93.33, 96.67, 95.0])
        both = compare_methods([96.67, 96.67], [93.33, 93.33], claimed_gain=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st.ttest_ind([96.67, 96.67, 96.67], [93.33, 96.67, 95.0], equal_var=False, alternative="greater")
    assert one.p_greater == pytest.approx(ref.pvalue) and 0 < one.p_greater < 1
    # scipy would give p = 0 (certainty) from two identical runs a side; the statistic is undefined
    assert math.isnan(both.p_greater) and math.isnan(both.gain_ci_low) and math.isnan(both.p_two_sided)
    assert both.gain == pytest.approx(3.34) and both.claimed_gain_in_ci is None
    assert "neither method's runs vary" in both.explanation and "outside" not in both.explanation


def test_compare_methods_needs_two_runs_each():
    with pytest.raises(AuditError, match="at least 2 runs"):
        compare_methods([73.0], [72.0, 72.5])


# --- multiple comparisons --------------------------------------------------------------------


def test_bh_matches_scipy():
    p = np.random.default_rng(9).uniform(0, 0.2, 25)
    assert np.allclose(adjust_pvalues(p), st.false_discovery_control(p, method="bh"))


def test_holm_against_a_hand_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    got = adjust_pvalues([0.01, 0.04, 0.03, 0.005], method="holm")
    assert np.allclose(got, [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(adjust_pvalues([0.5, 0.9], method="holm"), [1.0, 1.0])


def test_adjustment_skips_missing_tests_and_rejects_unknown_methods():
    got = adjust_pvalues([0.01, float("nan"), 0.03])
    assert np.isnan(got[1]) and np.allclose(got[[0, 2]], [0.02, 0.03])
    with pytest.raises(AuditError, match="allowed: bh, holm"):
        adjust_pvalues([0.1], method="bonferroni")


# --- aggregates ------------------------------------------------------------------------------


def test_iqm_of_normalised_scores():
    # task a -> 0.25, 0.5, 0.75; task b -> 1/3, 2/3; the middle three of five average 0.5
    res = aggregate_iqm({"a": [74, 75, 76], "b": [70, 71]}, baseline={"a": 73, "b": 69},
                        teacher={"a": 77, "b": 72}, n_boot=2000)
    assert res.iqm == pytest.approx(0.5)
    assert res.ci_low < 0.5 < res.ci_high and res.n_tasks == 2 and res.n_runs == 5
    assert res.task_means["b"] == pytest.approx(0.5)


def test_iqm_bootstrap_is_stratified():
    # one run per task: resampling within tasks cannot change anything
    res = aggregate_iqm({"a": [0.2], "b": [0.4], "c": [0.9], "d": [0.5]}, n_boot=500)
    assert res.ci_low == res.ci_high == res.iqm == pytest.approx(st.trim_mean([0.2, 0.4, 0.9, 0.5], 0.25))


def test_iqm_interval_covers_near_nominal():
    # 300 repetitions of 6 tasks x 5 runs from one distribution: the percentile interval of
    # the IQM should cover its population value roughly at the nominal 95 % (bootstrap
    # intervals run a little narrow with 30 runs, hence the looser bound).
    rng = np.random.default_rng(10)
    truth = 0.0  # IQM of a symmetric distribution centred at 0
    hits = 0
    for r in range(300):
        scores = {f"t{i}": rng.normal(0, 1, 5) for i in range(6)}
        res = aggregate_iqm(scores, n_boot=400, seed=r)
        hits += res.ci_low <= truth <= res.ci_high
    assert 0.88 <= hits / 300 <= 0.99


@pytest.mark.parametrize("kwargs,message", [
    (dict(baseline={"a": 70}), "both"),
    (dict(baseline={"a": 70}, teacher={"a": 70}), "must differ"),
    (dict(baseline={"b": 70}, teacher={"b": 75}), "lacks"),
])
def test_iqm_bad_normalisation(kwargs, message):
    with pytest.raises(AuditError, match=message):
        aggregate_iqm({"a": [71, 72]}, **kwargs)


def test_registry_style_missing_values_mean_no_claimed_spread():
    import pandas as pd

    v = judge_claim(73.2, [73.1, 73.3, 72.9], claimed_std=float("nan"), claimed_runs=pd.NA)
    assert v.claimed_std is None and v.claimed_runs is None and v.noise == "shared" and "taken as 1" in v.model
    v = judge_claim(73.2, [73.1, 73.3, 72.9], claimed_std=None, claimed_runs=pd.array([5], dtype="Int64")[0])
    assert v.claimed_runs == 5 and isinstance(v.claimed_runs, int)
