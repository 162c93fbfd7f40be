"""Section 1, verdicts: each published claim that matches the study's data set and pair, judged
on the confirmation runs under the claim's own selection rule, and the relative claims every KD
paper makes (beats the baseline; a newer method also beats classical KD). All p-values of the
report are adjusted together."""
from __future__ import annotations

import pandas as pd

from audit.errors import AuditError
from audit.folder import StudyFolder
from audit.judge.claim import judge_claim
from audit.judge.claims import matching_claims, reproduced_value
from audit.judge.multiple import adjust_pvalues
from audit.judge.relative import compare_methods
from audit.report.claimed import claimed_gain
from audit.report.document import Section, Table
from audit.report.format import finite, fmt, fmt_p
from audit.report.runs import Runs
from audit.report.settings import CORRECTIONS, Settings
from methods.catalogue import BASELINE, CLASSICAL, REFERENCES


def _verdict_class(v: str) -> str:
    return "v-" + v.lower().replace(" ", "-")


def _claimed_text(row: pd.Series) -> str:
    out = fmt(row["claimed_top1"])
    if finite(row.get("claimed_std")):
        out += f" ± {row['claimed_std']:.2f}"
    if not pd.isna(row.get("claimed_runs")):
        out += f" ({int(row['claimed_runs'])} runs)"
    return out


def _judge_published(folder: StudyFolder, runs: dict[str, Runs], settings: Settings,
                     registry: pd.DataFrame | None) -> list[dict]:
    """One row per matching published claim: its verdict (``None`` before any confirmation run)
    and the p-value of the test behind the verdict."""
    rows: list[dict] = []
    if registry is None:
        return rows
    for m in folder.all_methods:
        matched = matching_claims(registry, m, folder.get("dataset"), folder.get("teacher"), folder.get("student"))
        for _, claim in matched.iterrows():
            curves = runs[m].test_curves
            row = {"claim": claim, "method": m}
            if len(curves) == 0:
                row["verdict"] = None
            else:
                values = reproduced_value(curves, claim["rule"])
                try:
                    v = judge_claim(claim["claimed_top1"], values, claimed_std=claim["claimed_std"],
                                    claimed_runs=claim["claimed_runs"], margin=settings.margin, alpha=settings.alpha)
                except AuditError:
                    # a std without its number of runs cannot enter Welch's test: take the claim as exact
                    v = judge_claim(claim["claimed_top1"], values, claimed_runs=claim["claimed_runs"],
                                    margin=settings.margin, alpha=settings.alpha)
                row["verdict"] = v
                row["p"] = {"REPRODUCED": v.p_equivalence, "NOT REPRODUCED": v.p_shortfall,
                            "EXCEEDED": v.p_excess}.get(v.verdict, min(v.p_equivalence, v.p_shortfall, v.p_excess))
            rows.append(row)
    return rows


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


def _published_table(sec: Section, folder: StudyFolder, abs_rows: list[dict], settings: Settings) -> None:
    rows, classes, frame = [], [], []
    for r in abs_rows:
        c, v = r["claim"], r.get("verdict")
        raw = v.verdict if v is not None else "PENDING"
        # A decided verdict stands only if its test survives the report-wide adjustment.
        final = raw if (v is None or raw == "INCONCLUSIVE" or r["p_adj"] < settings.alpha) else "INCONCLUSIVE"
        shown = final if final == raw else f"{final} (unadjusted: {raw})"
        if v is None:
            cells = ["no confirmation runs yet", "—", "—", "—", "—"]
        else:
            cells = [f"{fmt(v.mean)} ± {fmt(v.std)} (n = {v.n})", fmt(v.diff, "+.2f"),
                     f"{fmt(v.ci_low, '+.2f')} to {fmt(v.ci_high, '+.2f')}", fmt_p(r["p"]), fmt_p(r["p_adj"])]
        epochs = "" if pd.isna(c.get("epochs")) else f" ({int(c['epochs'])} epochs)"
        rows.append([str(c["claim_id"]), r["method"], _claimed_text(c), str(c["rule"]), *cells, shown,
                     f"{c['paper']}; {c['source']}{epochs}"])
        classes.append(_verdict_class(final))
        frame.append({"claim_id": c["claim_id"], "method": r["method"], "claimed": c["claimed_top1"],
                      "claimed_std": c["claimed_std"], "claimed_runs": c["claimed_runs"], "rule": c["rule"],
                      "mean": v.mean if v else None, "std": v.std if v else None, "n": v.n if v else 0,
                      "diff": v.diff if v else None, "ci_low": v.ci_low if v else None,
                      "ci_high": v.ci_high if v else None, "p": r.get("p"), "p_adjusted": r.get("p_adj"),
                      "verdict": final, "verdict_unadjusted": raw, "paper": c["paper"], "source": c["source"]})
    level = 1 - 2 * settings.alpha
    sec.table(Table(["claim", "method", "claimed (%)", "rule", "reproduced (%) mean ± std", "difference (points)",
                     f"{level:.0%} CI of difference", "p", "p adjusted", "verdict", "source"],
                    rows, "verdicts_published.csv", pd.DataFrame(frame), classes, "verdict-table",
                    f"Published claims for {folder.get('dataset')} {folder.get('teacher')} → {folder.get('student')} "
                    f"(margin ±{settings.margin:g} points)"))
    stated = sorted({int(r["claim"]["epochs"]) for r in abs_rows if not pd.isna(r["claim"].get("epochs"))})
    if folder.epochs is not None and any(e != folder.epochs for e in stated):
        sec.note(f"This study trains each student for {folder.epochs} epochs, the claims for "
                 f"{', '.join(map(str, stated))}: a claim trained longer is expected to come out higher.")
    elif folder.epochs is not None:
        sec.note(f"This study trains each student for {folder.epochs} epochs; check the training length in "
                 f"each claim's source before reading a shortfall as a failure to reproduce.")


def _relative_table(sec: Section, rel_rows: list[dict], settings: Settings) -> None:
    rows, classes, frame = [], [], []
    for r in rel_rows:
        res = r["result"]
        label = f"{r['method']} beats {r['ref']}"
        claimed = fmt(r["claimed_gain"], "+.2f") + (f" ({r['gain_source']})" if r["gain_source"] else "") \
            if r["claimed_gain"] is not None else "— (every KD paper claims > 0)"
        if res is None:
            rows.append([label, claimed, "—", "—", "—", "—", "—", "—", "PENDING", r["why"]])
            classes.append("v-pending")
            frame.append({"claim": label, "verdict": "PENDING", "reason": r["why"]})
            continue
        if r["p_adj"] < settings.alpha:
            verdict = "SUPPORTED"
        elif res.gain_ci_high < 0:
            verdict = "CONTRADICTED"
        else:
            verdict = "INCONCLUSIVE"
        rows.append([label, claimed, fmt(res.gain, "+.2f"), f"{fmt(res.gain_ci_low, '+.2f')} to {fmt(res.gain_ci_high, '+.2f')}",
                     f"{res.prob_improvement:.2f} [{res.prob_improvement_ci_low:.2f}, {res.prob_improvement_ci_high:.2f}]",
                     fmt(res.hedges_g), fmt_p(r["p"]), fmt_p(r["p_adj"]), verdict,
                     f"{res.a_mean:.2f} ± {res.a_std:.2f} (n = {res.a_n}) vs {res.b_mean:.2f} ± {res.b_std:.2f} (n = {res.b_n})"])
        classes.append(_verdict_class(verdict))
        frame.append({"claim": label, "claimed_gain": r["claimed_gain"], "gain": res.gain, "ci_low": res.gain_ci_low,
                      "ci_high": res.gain_ci_high, "prob_improvement": res.prob_improvement,
                      "prob_improvement_ci_low": res.prob_improvement_ci_low,
                      "prob_improvement_ci_high": res.prob_improvement_ci_high, "hedges_g": res.hedges_g,
                      "p_welch_one_sided": r["p"], "p_adjusted": r["p_adj"], "verdict": verdict,
                      "a_mean": res.a_mean, "a_std": res.a_std, "a_n": res.a_n,
                      "b_mean": res.b_mean, "b_std": res.b_std, "b_n": res.b_n})
    if rows:
        level = 1 - settings.alpha
        sec.table(Table(["claim", "claimed gain (points)", "gain (points)", f"{level:.0%} CI of gain", "P(A > B) [CI]",
                         "Hedges' g", "Welch p (one-sided)", "p adjusted", "verdict", "test accuracy (%) A vs B"],
                        rows, "verdicts_relative.csv", pd.DataFrame(frame), classes, "verdict-table",
                        "Relative claims: the audited method against no KD and classical KD (last-epoch test accuracy)"))
        sec.note("SUPPORTED: the method is better with adjusted one-sided Welch p below alpha. CONTRADICTED: the "
                 "whole interval of the gain lies below zero. INCONCLUSIVE: neither. P(A > B) is the chance a random "
                 "run of A beats one of B (bootstrap interval); Hedges' g is the gain in pooled standard deviations.")
    else:
        sec.p(f"The study audits only references ({'/'.join(REFERENCES)}), so there is no relative claim to judge.")


def verdict_section(folder: StudyFolder, runs: dict[str, Runs], settings: Settings,
                    registry: pd.DataFrame | None) -> Section:
    """The verdicts; sets ``settings.n_tests`` to the number of tests adjusted together."""
    sec = Section("verdicts", 1, "Verdicts", short="Verdicts")
    if registry is None:
        sec.warn("The claims registry could not be read; only the relative claims are judged.")
    abs_rows = _judge_published(folder, runs, settings, registry)
    rel_rows = _judge_relative(folder, runs, settings, registry)

    # One test per row joins the family adjusted here.
    tested = [r for r in abs_rows + rel_rows if "p" in r]
    adjusted = adjust_pvalues([r["p"] for r in tested], settings.correction) if tested else []
    for r, q in zip(tested, adjusted):
        r["p_adj"] = float(q)
    settings.n_tests = sum(1 for r in tested if finite(r["p"]))

    if abs_rows:
        _published_table(sec, folder, abs_rows, settings)
    else:
        dataset = folder.get("dataset")
        n_reg = 0 if registry is None else int((registry.dataset_id == dataset).sum())
        sec.p(f"No published claim in the registry matches {dataset} with {folder.get('teacher')} → "
              f"{folder.get('student')} ({n_reg} claims for {dataset} in the registry). The relative claims every "
              f"KD paper makes are judged below.")
    _relative_table(sec, rel_rows, settings)
    sec.note(f"Claims are judged on the confirmation runs: the best configuration on validation re-trained on "
             f"{len(folder.seeds)} seeds and scored once on the test set. p-values are adjusted across the "
             f"{settings.n_tests} test(s) in this report with {CORRECTIONS[settings.correction]}; a verdict that does "
             f"not survive the adjustment at alpha = {settings.alpha:g} is reported as INCONCLUSIVE.")
    return sec
