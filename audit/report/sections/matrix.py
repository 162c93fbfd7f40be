"""Section 5, the cross-architecture matrix: each method's gain over the baseline on every
teacher → student pair the journal holds."""
from __future__ import annotations

import numpy as np
import pandas as pd

from audit.folder import StudyFolder
from audit.report import figures
from audit.report.document import Section, Table
from audit.report.format import finite, fmt
from methods.catalogue import BASELINE


def matrix_section(folder: StudyFolder) -> Section:
    sec = Section("cross-architecture", 5, "Cross-architecture matrix", short="Architectures")
    default = (folder.get("teacher"), folder.get("student"))

    def pair_of(r: dict) -> tuple[str, str]:
        return str(r.get("teacher", default[0])), str(r.get("student", default[1]))

    conf = [r for r in folder.records if r.get("phase") == "confirm" and r.get("status") == "ok" and finite(r.get("test_acc_last"))]
    pairs = list(dict.fromkeys(pair_of(r) for r in conf)) or [default]
    if len(pairs) < 2:
        sec.p(f"This study has one teacher → student pair ({default[0]} → {default[1]}); the matrix needs several.")
        return sec
    methods = [m for m in folder.all_methods if m != BASELINE]
    cols = [f"{t} → {s}" for t, s in pairs]
    values = np.full((len(methods), len(pairs)), np.nan)
    for j, pair in enumerate(pairs):
        acc = {m: [r["test_acc_last"] for r in conf if r["method"] == m and pair_of(r) == pair] for m in folder.all_methods}
        if not acc.get(BASELINE):
            continue
        for i, m in enumerate(methods):
            if acc.get(m):
                values[i, j] = float(np.mean(acc[m]) - np.mean(acc[BASELINE]))
    sec.table(Table(["method", *cols], [[m, *(fmt(v, "+.2f") for v in values[i])] for i, m in enumerate(methods)],
                    "cross_architecture.csv", pd.DataFrame(values, index=methods, columns=cols).rename_axis("method").reset_index()))
    sec.figure("matrix", "Cross-architecture matrix", "Look for a row that stays blue (a gain) across every pair: a "
               "method that helps only one pair does not generalise.", lambda: figures.matrix(values, methods, cols))
    return sec
