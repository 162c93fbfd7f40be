"""Section 3, equal-budget curves: the expected best validation accuracy of each method had it
been tuned with only n of its search trials (Dodge et al. 2019)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from audit.folder import StudyFolder
from audit.judge.tuning import expected_max, expected_max_std
from audit.report import figures
from audit.report.document import Section, Table
from audit.report.runs import Runs


def budget_curves_section(folder: StudyFolder, runs: dict[str, Runs], colour: dict[str, str]) -> Section:
    sec = Section("equal-budget", 3, "Equal-budget curves", short="Equal-budget curves")
    sec.p("Expected best validation accuracy if a method were tuned with only n of its search trials, "
          "estimated from the search trials it ran (Dodge et al. 2019, \"Show Your Work\": the expected "
          "maximum of n draws from the observed scores). Failed trials are left out and counted in the table.")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows, frame = [], []
    for m, r in runs.items():
        failed = sum(1 for t in folder.search(m) if t.get("status") != "ok")
        if not r.search_val:
            rows.append([m, "0", str(failed), "—", "—", "—", "—"])
            continue
        mean, sd = expected_max(r.search_val), expected_max_std(r.search_val)
        curves[m] = (mean, sd)
        n = len(mean)
        half = max(1, n // 2)
        rows.append([m, str(n), str(failed), f"{mean[0]:.2f}", f"{mean[half - 1]:.2f} (n = {half})", f"{mean[-1]:.2f}",
                     f"{max(r.search_val):.2f}"])
        frame += [{"method": m, "n": i + 1, "expected_best_val_acc": mu, "std": s} for i, (mu, s) in enumerate(zip(mean, sd))]
    sec.table(Table(["method", "trials ok", "trials failed", "E[best] n = 1 (%)", "E[best] half budget (%)",
                     "E[best] full budget (%)", "best trial (%)"], rows, "equal_budget.csv", pd.DataFrame(frame)))
    if len(curves) >= 2:
        first = sorted(curves, key=lambda m: -curves[m][0][0])
        last = sorted(curves, key=lambda m: -curves[m][0][-1])
        if first != last:
            sec.p(f"The order changes with the tuning budget: with one trial it is {' > '.join(first)}, "
                  f"with every trial {' > '.join(last)}.")
        else:
            sec.p(f"The order is the same with one trial and with every trial: {' > '.join(last)}.")
    if curves:
        sec.figure("equal_budget", "Equal-budget curves", "Read each curve at the same n: a method whose curve "
                   "rises above the others only at large n wins only with more tuning. Left: the whole range, bands ±1 "
                   "standard deviation; right: the same means zoomed on the end of the budget.",
                   lambda: figures.expected_max_curves(curves, colour))
    else:
        sec.warn("No search trial has finished yet.")
    return sec
