"""Section 2, the ranking: every method's confirmed test accuracy under the equal budget, with
its interval and its gain over the references. The numbers are ``summary.method_table``'s, the
same computation as the study's ``summary.csv``."""
from __future__ import annotations

import pandas as pd

from audit.folder import StudyFolder
from audit.judge.tuning import RANK_CI, mean_ci
from audit.report import figures
from audit.report.document import Section, Table
from audit.report.format import fmt, fmt_config
from audit.report.runs import Runs
from audit.report.summary import method_table, vs
from methods.catalogue import BASELINE, CLASSICAL, REFERENCES


def ranking_section(folder: StudyFolder, runs: dict[str, Runs], colour: dict[str, str]) -> Section:
    sec = Section("ranking", 2, "Method ranking under the equal budget", short="Ranking")
    have = {m: r for m, r in runs.items() if r.test_last}
    if not have:
        sec.warn("No confirmation run has finished yet, so there is nothing to rank.")
        return sec
    stats = method_table({m: r.test_last for m, r in have.items()})
    order = sorted(have, key=lambda m: -stats.test_mean[m])
    ci = {m: mean_ci(have[m].test_last) for m in order}
    rows, frame = [], []
    for rank, m in enumerate(order, 1):
        s = stats.loc[m]
        gains = {ref: s[vs(ref)] for ref in REFERENCES}
        rows.append([str(rank), m, str(s.runs), f"{s.test_mean:.2f} ± {fmt(s.test_std)}",
                     f"{fmt(ci[m][0])} to {fmt(ci[m][1])}",
                     *("" if m == ref else fmt(gains[ref], "+.2f") for ref in REFERENCES),
                     ", ".join(f"{v:.2f}" for v in have[m].test_last), fmt_config(have[m].config)])
        frame.append({"rank": rank, "method": m, "runs": s.runs, "mean": s.test_mean, "std": s.test_std,
                      "ci_low": ci[m][0], "ci_high": ci[m][1], **{vs(ref): gains[ref] for ref in REFERENCES},
                      "runs_test_acc": ";".join(f"{v:.4f}" for v in have[m].test_last),
                      "best_config": fmt_config(have[m].config)})
    sec.table(Table(["rank", "method", "runs", "test acc (%) mean ± std", f"{RANK_CI:.0%} CI (%)",
                     *(f"vs {ref} (points)" for ref in REFERENCES), "every seed (%)", "configuration (best on validation)"],
                    rows, "ranking.csv", pd.DataFrame(frame)))
    sec.figure("ranking", "Method ranking", "Each dot is one seed and each diamond a mean with its "
               f"{RANK_CI:.0%} interval; a method whose interval sits inside the grey ({BASELINE}) or blue ({CLASSICAL}) "
               "band is not distinguishable from that reference.",
               lambda: figures.ranking({m: have[m].test_last for m in order}, ci, colour, RANK_CI))
    return sec
