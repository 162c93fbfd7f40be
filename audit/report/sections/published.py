"""Section 1, verdicts, its first table: every published claim matching the study's data set and
pair, judged on the confirmation runs under the claim's own selection rule (both epochs where
the source does not state one), with how the claim was modelled and the margin it was judged at
beside each verdict."""
from __future__ import annotations

import numpy as np
import pandas as pd

from audit.errors import AuditError
from audit.folder import StudyFolder
from audit.judge.claims import matching_claims
from audit.judge.published import (
    EPOCH_RULES,
    PublishedVerdict,
    judge_published,
    per_run,
    selection_of,
)
from audit.report.document import Section, Table
from audit.report.format import finite, fmt, fmt_p
from audit.report.runs import Runs
from audit.report.settings import Settings

_EPOCH = {"last": "last epoch", "best": "best epoch"}


def verdict_class(v: str) -> str:
    return "v-" + v.lower().replace(" ", "-")


def _claimed_text(row: pd.Series) -> str:
    out = fmt(row["claimed_top1"])
    if finite(row.get("claimed_std")):
        out += f" ± {row['claimed_std']:.2f}"
    if not pd.isna(row.get("claimed_runs")):
        out += f" ({int(row['claimed_runs'])} runs)"
    return out


def _others(runs: dict[str, Runs], method: str) -> dict[str, tuple[float, float]]:
    """Per epoch rule, the other methods' (sum of squared deviations, df): the study's pooled spread."""
    out = {}
    for epoch in EPOCH_RULES:
        ss = df = 0.0
        for m, r in runs.items():
            if m == method or len(r.test_curves) < 2:
                continue
            x = np.asarray(per_run(r.test_curves, epoch))
            ss, df = ss + float(((x - x.mean()) ** 2).sum()), df + x.size - 1
        out[epoch] = (ss, df)
    return out


def judge_rows(folder: StudyFolder, runs: dict[str, Runs], settings: Settings,
               registry: pd.DataFrame | None) -> list[dict]:
    """One row per matching published claim: its ``PublishedVerdict`` (``None`` before any
    confirmation run, or with ``why`` when the claim cannot be judged) and the p-value of the test
    behind the verdict, which joins the report's adjusted family."""
    rows: list[dict] = []
    if registry is None:
        return rows
    for m in folder.all_methods:
        matched = matching_claims(registry, m, folder.get("dataset"), folder.get("teacher"), folder.get("student"))
        for _, claim in matched.iterrows():
            row: dict = {"claim": claim, "method": m, "verdict": None,
                         "selection": selection_of(claim["rule"], claim["rule_basis"], claim["claimed_runs"])}
            curves = runs[m].test_curves
            if len(curves):
                try:
                    pv = judge_published(claim["claimed_top1"], curves, row["selection"],
                                         claimed_std=claim["claimed_std"], noise=settings.noise,
                                         others=_others(runs, m) if settings.spread == "study" else None,
                                         margin=settings.margin, alpha=settings.alpha)
                except AuditError as exc:  # e.g. a best-of-k claim whose k the source does not give
                    row["why"] = str(exc)
                else:
                    row["verdict"], row["p"] = pv, pv.p
            rows.append(row)
    return rows


def _per_epoch(pv: PublishedVerdict, cell) -> str:
    if len(pv.by_epoch) == 1:
        return cell(next(iter(pv.by_epoch.values())))
    return "; ".join(f"{_EPOCH[e]} {cell(v)}" for e, v in pv.by_epoch.items())


def _shown_verdict(pv: PublishedVerdict, final: str) -> str:
    raw = pv.verdict
    text = final if final == raw else f"{final} (unadjusted: {raw})"
    if pv.differs:
        each = ", ".join(f"{_EPOCH[e]}: {v.verdict}" for e, v in pv.by_epoch.items())
        return f"{text}; the unstated epoch rule decides ({each})"
    if len(pv.by_epoch) > 1:
        return f"{text} (at both epochs)"
    return text


def _frame_row(r: dict, final: str, settings: Settings) -> dict:
    c, pv = r["claim"], r["verdict"]
    row = {"claim_id": c["claim_id"], "method": r["method"], "claimed": c["claimed_top1"],
           "claimed_std": c["claimed_std"], "claimed_runs": c["claimed_runs"], "rule": c["rule"],
           "rule_basis": c["rule_basis"], "selection": r["selection"].describe(),
           "model": pv.model if pv else None, "noise": settings.noise, "spread_from": settings.spread}
    for e in EPOCH_RULES:
        v = pv.by_epoch.get(e) if pv else None
        row |= {f"{k}_{e}": (getattr(v, k) if v else None)
                for k in ("n", "mean", "std", "raw_diff", "diff", "ci_low", "ci_high", "spread", "verdict")}
    return row | {"p": r.get("p"), "p_adjusted": r.get("p_adj"), "verdict": final,
                  "verdict_unadjusted": pv.verdict if pv else None, "epoch_rule_decides": bool(pv and pv.differs),
                  "margin": settings.margin, "alpha": settings.alpha, "margin_preregistered": settings.margin_registered,
                  "alpha_preregistered": settings.alpha_registered, "paper": c["paper"], "source": c["source"]}


def published_table(sec: Section, folder: StudyFolder, rows_in: list[dict], settings: Settings) -> None:
    rows, classes, frame = [], [], []
    judged_at = settings.judged_at()
    for r in rows_in:
        c, pv = r["claim"], r["verdict"]
        # A decided verdict stands only if its test survives the report-wide adjustment.
        raw = pv.verdict if pv is not None else "PENDING"
        final = raw if (pv is None or raw == "INCONCLUSIVE" or r["p_adj"] < settings.alpha) else "INCONCLUSIVE"
        if pv is None:
            why = r.get("why", "no confirmation runs yet")
            cells = ["—", why, "—", "—", "—", "—", "PENDING" if "why" not in r else "NOT JUDGED"]
            final = cells[-1]
        else:
            first = next(iter(pv.by_epoch.values()))
            cells = [pv.model + ("; " + "; ".join(pv.notes) if pv.notes else ""),
                     _per_epoch(pv, lambda v: f"{fmt(v.mean)} ± {fmt(v.std)}") + f" (n = {first.n})",
                     _per_epoch(pv, lambda v: fmt(v.diff, "+.2f")),
                     _per_epoch(pv, lambda v: f"{fmt(v.ci_low, '+.2f')} to {fmt(v.ci_high, '+.2f')}"),
                     fmt_p(r["p"]), fmt_p(r["p_adj"]), _shown_verdict(pv, final)]
        epochs = "" if pd.isna(c.get("epochs")) else f" ({int(c['epochs'])} epochs)"
        rows.append([str(c["claim_id"]), r["method"], _claimed_text(c), r["selection"].describe(), *cells, judged_at,
                     f"{c['paper']}; {c['source']}{epochs}"])
        classes.append(verdict_class(final))
        frame.append(_frame_row(r, final, settings))
    level = 1 - 2 * settings.alpha
    sec.table(Table(["claim", "method", "claimed (%)", "selection", "claim modelled as", "reproduced (%) mean ± std",
                     "difference (points)", f"{level:.0%} CI of difference", "p", "p adjusted", "verdict", "judged at",
                     "source"],
                    rows, "verdicts_published.csv", pd.DataFrame(frame), classes, "verdict-table",
                    f"Published claims for {folder.get('dataset')} {folder.get('teacher')} → {folder.get('student')} "
                    f"(margin ±{settings.margin:g} points)"))
    sec.note("Each claim is a random variable like each of our runs: a single run (when its source does not say how "
             "many, taken as one, the noisiest case), the mean or median of k runs, or the best of k seeds, drawn with "
             "the same seed spread as ours; the difference is our method's mean minus the paper's, corrected for a "
             "best-of-k selection, and its interval is exact under that model (audit/judge/noise.py). Where the source "
             "does not state which epoch it reports, the claim is judged at the last and at the best epoch and a "
             "verdict stands only where both agree (the larger p-value of the two).")
    stated = sorted({int(r["claim"]["epochs"]) for r in rows_in if not pd.isna(r["claim"].get("epochs"))})
    if folder.epochs is not None and any(e != folder.epochs for e in stated):
        sec.note(f"This study trains each student for {folder.epochs} epochs, the claims for "
                 f"{', '.join(map(str, stated))}: a claim trained longer is expected to come out higher.")
    elif folder.epochs is not None:
        sec.note(f"This study trains each student for {folder.epochs} epochs; check the training length in "
                 f"each claim's source before reading a shortfall as a failure to reproduce.")

