"""Section 4, hyper-parameter sensitivity: validation accuracy against each shared
hyper-parameter, the spread across searched configurations next to the gain KD is claimed to
give, and each method's hyper-parameter importances."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from audit.folder import StudyFolder
from audit.report import figures
from audit.report.claimed import claimed_here, registry_gain
from audit.report.document import Section, Table
from audit.report.format import finite, fmt
from audit.report.importance import Computed, importance_table
from audit.report.runs import Runs
from methods.catalogue import BASELINE, SHARED_SPACE

SHARED_HPS = tuple(SHARED_SPACE)  # temperature, alpha, strength


def _scatter(sec: Section, runs: dict[str, Runs], colour: dict[str, str]) -> None:
    points = {}
    for m, r in runs.items():
        by_hp = {}
        for hp in SHARED_HPS:
            xs = [(c[hp], v) for c, v in zip(r.search_configs, r.search_val) if finite(c.get(hp))]
            if xs:
                by_hp[hp] = (np.array([x for x, _ in xs], float), np.array([y for _, y in xs], float))
        if by_hp:
            points[m] = by_hp
    if points:
        sec.figure("sensitivity", "Hyper-parameter sensitivity", "A flat cloud means the method does not care "
                   "about that hyper-parameter; a steep or narrow one means its result depends on tuning it well.",
                   lambda: figures.sensitivity(points, SHARED_HPS, colour))
    else:
        sec.warn("No search trial has finished yet.")


def _spread(sec: Section, folder: StudyFolder, runs: dict[str, Runs], registry: pd.DataFrame | None) -> None:
    """The spread across configurations next to the claimed gain."""
    here = claimed_here(folder, registry)
    elsewhere = {m: registry_gain(m, registry) for m in folder.all_methods}
    base = float(np.mean(runs[BASELINE].test_last)) if runs.get(BASELINE) and runs[BASELINE].test_last else math.nan
    rows, frame = [], []
    for m, r in runs.items():
        if not r.search_val:
            continue
        v = np.asarray(r.search_val)
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        gain = float(np.mean(r.test_last)) - base if r.test_last and m != BASELINE else math.nan
        if here.get(m) is not None:
            claimed = f"{here[m]:+.2f} (this pair)"
        elif elsewhere.get(m):
            g, k = elsewhere[m]
            claimed = f"{g:+.2f} (median of {k} claims elsewhere)"
        else:
            claimed = "—"
        rows.append([m, str(v.size), f"{v.min():.2f}", f"{med:.2f}", f"{v.max():.2f}", f"{v.max() - v.min():.2f}",
                     f"{q3 - q1:.2f}", "" if m == BASELINE else fmt(gain, "+.2f"), "" if m == BASELINE else claimed])
        frame.append({"method": m, "configs": v.size, "val_min": v.min(), "val_median": med, "val_max": v.max(),
                      "spread": v.max() - v.min(), "iqr": q3 - q1, f"observed_test_gain_vs_{BASELINE}": gain,
                      f"claimed_gain_vs_{BASELINE}": here.get(m) if here.get(m) is not None
                      else (elsewhere[m][0] if elsewhere.get(m) else None)})
    if rows:
        sec.table(Table(["method", "configs", "val worst (%)", "val median (%)", "val best (%)", "spread (points)",
                         "IQR (points)", f"observed test gain vs {BASELINE} (points)",
                         f"claimed gain vs {BASELINE} (points)"],
                        rows, "sensitivity.csv", pd.DataFrame(frame),
                        caption="Validation accuracy across searched configurations, next to the gain KD is claimed to give"))
        sec.note("When the spread across configurations is larger than the claimed gain, how well a method was "
                 "tuned matters more than which method it is. Claimed gains marked 'elsewhere' come from other "
                 "data sets and pairs in the registry, for scale only.")


def _importances(sec: Section, folder: StudyFolder, runs: dict[str, Runs]) -> None:
    """One figure per method that has enough trials; one table row per method, one column per hyper-parameter."""
    found: dict[str, dict[str, float]] = {}
    why_not: dict[str, str] = {}
    for m in runs:
        imp, why, ostudy = importance_table(folder, m)
        if imp is None:
            why_not[m] = why
            continue
        found[m] = imp
        sec.figure(f"importance_{m}", f"Hyper-parameter importance of {m}",
                   "The longest bar marks the hyper-parameter that explains most of the variation in validation accuracy.",
                   lambda ostudy=ostudy, m=m, imp=imp: figures.importances(ostudy, Computed(imp), m), compact=True)
    params = list(dict.fromkeys([*SHARED_HPS, *(k for imp in found.values() for k in imp)]))
    params = [p for p in params if any(p in imp for imp in found.values())]
    rows = [[m, *(fmt(found[m].get(p), ".3f") if m in found else "—" for p in params), why_not.get(m, "")] for m in runs]
    frame = pd.DataFrame([{"method": m, "param": k, "importance": v} for m, imp in found.items() for k, v in imp.items()],
                         columns=["method", "param", "importance"])
    sec.table(Table(["method", *params, "note"], rows, "importances.csv", frame,
                    caption="Hyper-parameter importance (optuna.importance.get_param_importances, fANOVA with seed 0; "
                            "each row sums to 1)"))


def sensitivity_section(folder: StudyFolder, runs: dict[str, Runs], colour: dict[str, str],
                        registry: pd.DataFrame | None) -> Section:
    sec = Section("sensitivity", 4, "Hyper-parameter sensitivity", short="Sensitivity")
    _scatter(sec, runs, colour)
    _spread(sec, folder, runs, registry)
    _importances(sec, folder, runs)
    return sec
