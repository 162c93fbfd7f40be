"""A reproduction's first section: each claim's two arms side by side, claimed | reproduced as
published | equal-budget tuned, with the two differences that separate the two causes of a failed
verdict (DESIGN.md, "Two arms for one claim"):

- claimed minus as published: is the number reproducible at all, under the source's own protocol
  and selection rule? (the claim's verdict, from ``audit.judge.claim``);
- as published against classical KD tuned: does the method's gain survive when classical KD gets
  the same tuning budget? (Welch's test, ``audit.judge.relative``; both arms at their last epoch, so
  neither number was picked on the test set).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from audit.folder import StudyFolder
from audit.judge.claim import Verdict
from audit.judge.published import Selection, judge_published, per_run, statistic_of_rule
from audit.judge.relative import compare_methods
from audit.report.document import Section, Table
from audit.report.format import fmt, fmt_p
from audit.report.runs import collect_runs
from methods.catalogue import CLASSICAL


@dataclass
class Arm:
    """The as-published runs of one claim: each run's test curve, the values its rule takes, and
    each run's last epoch."""

    protocol: dict
    curves: list[list[float]]
    values: list[float]
    last: list[float]


def published_arms(protocols: list[dict], records: list[dict]) -> list[Arm]:
    arms = []
    for p in protocols:
        runs = [r for r in records if r.get("claim_id") == p["claim_id"] and r.get("status") == "ok" and r.get("test_curve")]
        runs.sort(key=lambda r: r.get("seed", 0))
        curves = [list(r["test_curve"]) for r in runs]
        arms.append(Arm(p, curves, per_run(curves, p["per_run_epoch"]) if curves else [], [c[-1] for c in curves]))
    return arms


def _verdict(p: dict, curves: list[list[float]], margin: float, alpha: float) -> Verdict:
    """The claim judged under its own rule: the epoch the preset says a run contributes, and the
    statistic of k runs the rule names (a mean unless the rule says median or best of k seeds)."""
    selection = Selection((p["per_run_epoch"],), statistic_of_rule(p["rule"]), p.get("claimed_runs"), True)
    judged = judge_published(p["claimed"], curves, selection, claimed_std=p.get("claimed_std"), margin=margin, alpha=alpha)
    return judged.by_epoch[p["per_run_epoch"]]


def _tuned(audits: list[StudyFolder], p: dict) -> tuple[StudyFolder | None, list[float], list[float]]:
    """The equal-budget study of the claim's data set and pair: the method's and classical KD's confirmed runs."""
    for f in audits:
        if (f.get("dataset"), f.get("teacher"), f.get("student")) == (p["dataset"], p["teacher"], p["student"]) \
                and p["method"] in f.all_methods:
            runs = collect_runs(f)
            return f, runs[p["method"]].test_last, runs[CLASSICAL].test_last
    return None, [], []


def _mean(xs: list[float]) -> str:
    if not xs:
        return "—"
    s = pd.Series(xs)
    return f"{s.mean():.2f} ± {0.0 if len(xs) < 2 else s.std():.2f} (n = {len(xs)})"


def arms_section(protocols: list[dict], records: list[dict], audits: list[StudyFolder], *, margin: float,
                 alpha: float, with_audit: bool) -> Section:
    sec = Section("arms", 1, "Two arms per claim", short="Arms")
    rows, classes, frame = [], [], []
    for arm in published_arms(protocols, records):
        p = arm.protocol
        v = _verdict(p, arm.curves, margin, alpha) if arm.curves else None
        audit, tuned_m, tuned_kd = _tuned(audits, p)
        gap = f"{fmt(-v.diff, '+.2f')} [{fmt(-v.ci_high, '+.2f')} to {fmt(-v.ci_low, '+.2f')}]" if v else "—"
        vs_kd, p_kd = "—", None
        if len(arm.last) >= 2 and len(tuned_kd) >= 2:
            r = compare_methods(arm.last, tuned_kd, alpha=alpha)
            vs_kd, p_kd = f"{fmt(r.gain, '+.2f')} [{fmt(r.gain_ci_low, '+.2f')} to {fmt(r.gain_ci_high, '+.2f')}]", r.p_greater
        elif audit is not None:
            vs_kd = f"needs 2 runs of each (have {len(arm.last)} and {len(tuned_kd)})"
        rows.append([p["claim_id"], p["method"], f"{p['teacher']} → {p['student']} ({p['dataset']})", fmt(p["claimed"]),
                     f"{_mean(arm.values)}, {p['per_run_epoch']} epoch", v.verdict if v else "PENDING", gap,
                     _mean(tuned_m) if audit else "—", _mean(tuned_kd) if audit else "—", vs_kd, fmt_p(p_kd)])
        classes.append("v-" + (v.verdict.lower().replace(" ", "-") if v else "pending"))
        frame.append({"claim_id": p["claim_id"], "method": p["method"], "dataset": p["dataset"], "teacher": p["teacher"],
                      "student": p["student"], "claimed": p["claimed"], "rule": p["rule"], "per_run_epoch": p["per_run_epoch"],
                      "published_mean": v.mean if v else None, "claim_model": v.model if v else None, "published_n": len(arm.values), "verdict": v.verdict if v else None,
                      "claimed_minus_published": -v.diff if v else None, "ci_low": -v.ci_high if v else None,
                      "ci_high": -v.ci_low if v else None, "tuned_method_mean": pd.Series(tuned_m).mean() if tuned_m else None,
                      "tuned_classical_mean": pd.Series(tuned_kd).mean() if tuned_kd else None, "published_vs_tuned_classical_p": p_kd})
    level = 1 - 2 * alpha
    sec.table(Table(["claim", "method", "pair", "claimed (%)", "reproduced as published (%)", "verdict",
                     f"claimed − as published [{level:.0%} CI]", "equal-budget tuned method (%)", f"equal-budget tuned {CLASSICAL} (%)",
                     f"as published − tuned {CLASSICAL} [{1 - alpha:.0%} CI]", "p (one-sided)"],
                    rows, "arms.csv", pd.DataFrame(frame), classes, "verdict-table",
                    f"Each claim: the number as published, reproduced under its source's protocol, and the equal-budget arm (margin ±{margin:g} points)"))
    sec.note("Claimed − as published: is the number reproducible at all? The verdict reads it against the margin "
             "(REPRODUCED: the interval lies inside it; NOT REPRODUCED: below it; EXCEEDED: above it), under the claim's "
             "own rule: each run contributes its last or its best test epoch as the source did. As published − tuned classical KD: "
             "does the gain survive equal tuning? Welch's test of the as-published runs against classical KD tuned under "
             "the equal budget, both at their last epoch.")
    models = [f"{f['claim_id']}: {f['claim_model']}" for f in frame if f.get("claim_model")]
    if models:
        sec.note("How each claim was modelled (the statistic of its runs and its own noise): " + "; ".join(models) + ".")
    if not with_audit:
        sec.p("The equal-budget arm was not run (add --with-audit): only the first difference is shown.")
    return sec
