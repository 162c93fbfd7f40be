"""Section 1, verdicts: each published claim that matches the study's data set and pair, judged
on the confirmation runs under the claim's own selection rule (the table is built in
``published``), and the relative claims every KD paper makes (beats the baseline; a newer method
also beats classical KD). All p-values of the report are adjusted together; beside every verdict
stands the margin and level it was judged at, and whether the study fixed them before its runs."""
from __future__ import annotations

import math

import pandas as pd

from audit.folder import StudyFolder
from audit.judge.claims import matching_claims
from audit.judge.improvement import MIN_RUNS
from audit.judge.multiple import adjust_pvalues
from audit.judge.relative import compare_methods, power_gain, seeds_for_power
from audit.report.claimed import claimed_gain
from audit.report.document import Section, Table
from audit.report.format import finite, fmt, fmt_p
from audit.report.runs import Runs
from audit.report.sections.published import judge_rows, published_table, verdict_class
from audit.report.settings import CORRECTIONS, SPREADS, Settings
from methods.catalogue import BASELINE, CLASSICAL, REFERENCES


def _judge_relative(folder: StudyFolder, runs: dict[str, Runs], settings: Settings,
                    registry: pd.DataFrame | None) -> list[dict]:
    """One row per relative claim: the comparison (``None`` with a reason when there are too few
    runs) and the claimed gain where the registry states one."""
    rows: list[dict] = []
    # Every KD paper claims its method beats the baseline, and a newer method also claims to beat classical KD.
    pairs = [(m, ref) for m in folder.methods if m != BASELINE for ref in REFERENCES
             if ref != m and not (ref == CLASSICAL and m in REFERENCES)]
    for m, ref in pairs:
        a, b = runs.get(m), runs.get(ref)
        row: dict = {"method": m, "ref": ref, "result": None}
        claims_m = (matching_claims(registry, m, folder.get("dataset"), folder.get("teacher"), folder.get("student"))
                    if registry is not None else pd.DataFrame())
        gain, gain_src = claimed_gain(claims_m, ref, registry) if len(claims_m) else (None, "")
        row["claimed_gain"], row["gain_source"] = gain, gain_src
        if a is None or b is None or len(a.test_last) < 2 or len(b.test_last) < 2:
            row["why"] = (f"needs at least 2 confirmation runs of each; have {len(a.test_last) if a else 0} "
                          f"of {m} and {len(b.test_last) if b else 0} of {ref}")
        else:
            r = compare_methods(a.test_last, b.test_last, claimed_gain=gain, alpha=settings.alpha)
            row["result"], row["p"] = r, r.p_greater
        rows.append(row)
    return rows


def _relative_table(sec: Section, rel_rows: list[dict], settings: Settings) -> None:
    rows, classes, frame = [], [], []
    for r in rel_rows:
        res = r["result"]
        label = f"{r['method']} beats {r['ref']}"
        claimed = fmt(r["claimed_gain"], "+.2f") + (f" ({r['gain_source']})" if r["gain_source"] else "") \
            if r["claimed_gain"] is not None else "— (every KD paper claims > 0)"
        if res is None:
            rows.append([label, claimed, "—", "—", "—", "—", "—", "—", "PENDING", settings.judged_at(margin=False), r["why"]])
            classes.append("v-pending")
            frame.append({"claim": label, "verdict": "PENDING", "reason": r["why"]})
            continue
        if r["p_adj"] < settings.alpha:
            verdict = "SUPPORTED"
        elif res.gain_ci_high < 0:
            verdict = "CONTRADICTED"
        else:
            verdict = "INCONCLUSIVE"
        poi = (f"{res.prob_improvement:.2f} [{res.prob_improvement_ci_low:.2f}, {res.prob_improvement_ci_high:.2f}]"
               if math.isfinite(res.prob_improvement_ci_low) else f"{res.prob_improvement:.2f} (no interval below {MIN_RUNS} runs)")
        rows.append([label, claimed, fmt(res.gain, "+.2f"), f"{fmt(res.gain_ci_low, '+.2f')} to {fmt(res.gain_ci_high, '+.2f')}",
                     poi, fmt(res.hedges_g), fmt_p(r["p"]), fmt_p(r["p_adj"]), verdict, settings.judged_at(margin=False),
                     f"{res.a_mean:.2f} ± {res.a_std:.2f} (n = {res.a_n}) vs {res.b_mean:.2f} ± {res.b_std:.2f} (n = {res.b_n})"])
        classes.append(verdict_class(verdict))
        frame.append({"claim": label, "claimed_gain": r["claimed_gain"], "gain": res.gain, "ci_low": res.gain_ci_low,
                      "ci_high": res.gain_ci_high, "prob_improvement": res.prob_improvement,
                      "prob_improvement_ci_low": res.prob_improvement_ci_low,
                      "prob_improvement_ci_high": res.prob_improvement_ci_high, "hedges_g": res.hedges_g,
                      "p_welch_one_sided": r["p"], "p_adjusted": r["p_adj"], "verdict": verdict, "alpha": settings.alpha,
                      "alpha_preregistered": settings.alpha_registered,
                      "a_mean": res.a_mean, "a_std": res.a_std, "a_n": res.a_n,
                      "b_mean": res.b_mean, "b_std": res.b_std, "b_n": res.b_n})
    if rows:
        level = 1 - settings.alpha
        sec.table(Table(["claim", "claimed gain (points)", "gain (points)", f"{level:.0%} CI of gain", "P(A > B) [CI]",
                         "Hedges' g", "Welch p (one-sided)", "p adjusted", "verdict", "judged at", "test accuracy (%) A vs B"],
                        rows, "verdicts_relative.csv", pd.DataFrame(frame), classes, "verdict-table",
                        "Relative claims: the audited method against no KD and classical KD (last-epoch test accuracy)"))
        sec.note("SUPPORTED: the method is better with adjusted one-sided Welch p below alpha. CONTRADICTED: the "
                 "whole interval of the gain lies below zero. INCONCLUSIVE: neither. P(A > B) is the chance a random "
                 f"run of A beats one of B, with Newcombe's score interval (none below {MIN_RUNS} runs of each, where no "
                 "interval keeps its level); Hedges' g is the gain in pooled standard deviations.")
    else:
        sec.p(f"The study audits only references ({'/'.join(REFERENCES)}), so there is no relative claim to judge.")


def verdict_section(folder: StudyFolder, runs: dict[str, Runs], settings: Settings,
                    registry: pd.DataFrame | None) -> Section:
    """The verdicts; sets ``settings.n_tests`` to the number of tests adjusted together."""
    sec = Section("verdicts", 1, "Verdicts", short="Verdicts")
    if registry is None:
        sec.warn("The claims registry could not be read; only the relative claims are judged.")
    if settings.deviates:
        sec.warn(f"This report judges at {settings.judged_at()}: the study fixed ±{settings.margin_registered:g} points "
                 f"and alpha {settings.alpha_registered:g} in study.toml before its runs. Every verdict below says so.")
    elif not settings.registered:
        sec.note("This study folder predates pre-registration: its study.toml holds no margin and alpha, so the "
                 f"defaults ±{settings.margin:g} points and alpha {settings.alpha:g} are used.")
    abs_rows = judge_rows(folder, runs, settings, registry)
    rel_rows = _judge_relative(folder, runs, settings, registry)

    # One test per row joins the family adjusted here.
    tested = [r for r in abs_rows + rel_rows if "p" in r]
    adjusted = adjust_pvalues([r["p"] for r in tested], settings.correction) if tested else []
    for r, q in zip(tested, adjusted):
        r["p_adj"] = float(q)
    settings.n_tests = sum(1 for r in tested if finite(r["p"]))

    if abs_rows:
        published_table(sec, folder, abs_rows, settings)
    else:
        dataset = folder.get("dataset")
        n_reg = 0 if registry is None else int((registry.dataset_id == dataset).sum())
        sec.p(f"No published claim in the registry matches {dataset} with {folder.get('teacher')} → "
              f"{folder.get('student')} ({n_reg} claims for {dataset} in the registry). The relative claims every "
              f"KD paper makes are judged below.")
    _relative_table(sec, rel_rows, settings)
    _power_note(sec, runs, settings, sum(1 for r in rel_rows if r["result"] is not None))
    sec.note(f"Claims are judged on the confirmation runs: the best configuration on validation re-trained on "
             f"{len(folder.seeds)} seeds and scored once on the test set. p-values are adjusted across the "
             f"{settings.n_tests} test(s) in this report with {CORRECTIONS[settings.correction]}; a verdict that does "
             f"not survive the adjustment at alpha = {settings.alpha:g} is reported as INCONCLUSIVE. The seed spread of "
             f"an absolute verdict comes from {SPREADS[settings.spread]}.")
    return sec


DESIGN_GAIN = 1.0  # points: the true gain over the baseline the design should detect (issue 13)


def design_power(runs: dict[str, Runs], settings: Settings) -> tuple[float, float, int, int] | None:
    """(power, pooled seed spread, runs per method, tests): the chance that a true gain of
    ``DESIGN_GAIN`` points is declared SUPPORTED by this study's design, from the spread its own
    confirmation runs measured (pooled over methods), at the level and number of tests of the report.
    ``None`` when fewer than two methods have two runs."""
    groups = [r.test_last for r in runs.values() if len(r.test_last) >= 2]
    if len(groups) < 2:
        return None
    n = min(len(g) for g in groups)
    variances = [float(pd.Series(g).var(ddof=1)) for g in groups]
    sd = math.sqrt(sum(v * (len(g) - 1) for v, g in zip(variances, groups)) / sum(len(g) - 1 for g in groups))
    if not (math.isfinite(sd) and sd > 0):
        return None
    tests = max(1, settings.n_tests)
    return power_gain(DESIGN_GAIN, n, sd, alpha=settings.alpha, tests=tests), sd, n, tests


def _power_note(sec: Section, runs: dict[str, Runs], settings: Settings, relative: int) -> None:
    """What the verdicts could have found: a design without power makes INCONCLUSIVE uninformative."""
    if not relative:
        return
    found = design_power(runs, settings)
    if found is None:
        return
    power, sd, n, tests = found
    need = seeds_for_power(DESIGN_GAIN, sd, alpha=settings.alpha, tests=tests)
    text = (f"Power of this design: with {n} confirmation runs of each method and the seed spread its runs "
            f"measured (pooled standard deviation {sd:.2f} points), a true gain of {DESIGN_GAIN:g} point over a "
            f"reference is declared SUPPORTED with probability {power:.2f} (one-sided Welch at alpha {settings.alpha:g} / "
            f"{tests} tests, a lower bound under the adjustment; audit.judge.relative.power_gain).")
    if power < 0.8:
        text += (f" Below 0.8: an INCONCLUSIVE verdict here says little; {need} runs of each would reach 0.8."
                 if need is not None else " Below 0.8: an INCONCLUSIVE verdict here says little.")
        sec.warn(text)
    else:
        sec.note(text)
