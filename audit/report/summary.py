"""Each method's confirmed test accuracy against the references: one computation behind the
printed summary and ``summary.csv`` (``summarise``) and the report's ranking section
(``method_table``)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from methods.catalogue import REFERENCES


def vs(ref: str) -> str:
    """The column of the gain over a reference: ``vs_<reference>``."""
    return f"vs_{ref}"


STATS_COLUMNS = ["method", "runs", "test_mean", "test_std", *(vs(ref) for ref in REFERENCES)]
SUMMARY_COLUMNS = [*STATS_COLUMNS, "search_ok", "search_failed", "best_config"]


def method_table(accuracies: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Per method (in the mapping's order): the number of runs, the mean and standard deviation
    (ddof 1) of their test accuracy, and the mean's gain over each reference's mean (NaN where a
    reference has no run). Indexed by method."""
    x = {m: np.asarray(list(v), dtype=float) for m, v in accuracies.items()}
    means = {m: float(a.mean()) if a.size else math.nan for m, a in x.items()}
    rows = [{"method": m, "runs": int(a.size), "test_mean": means[m],
             "test_std": float(a.std(ddof=1)) if a.size > 1 else math.nan,
             **{vs(ref): means[m] - means.get(ref, math.nan) for ref in REFERENCES}} for m, a in x.items()]
    return pd.DataFrame(rows, columns=STATS_COLUMNS).set_index("method", drop=False)


def summarise(results: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """Mean and std of last-epoch test accuracy over confirmation seeds; gains over the references
    (``vs_<reference>`` columns).

    Rows follow ``methods`` (the study's order) so that the table does not depend on which
    concurrent trial happened to finish first; methods not listed follow in journal order."""
    if results.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    conf = results[(results.phase == "confirm") & (results.status == "ok")]
    search = results[results.phase == "search"]
    order = list(dict.fromkeys([*(methods or []), *results.method]))
    stats = method_table({m: conf.loc[conf.method == m, "test_acc_last"].astype(float).dropna() for m in order})
    hp_cols = [c for c in conf.columns if c.startswith("hp_")]
    rows = []
    for method in order:
        s = search[search.method == method]
        first = conf[conf.method == method].head(1)
        best = {c[3:]: first[c].iloc[0] for c in hp_cols if not first.empty and pd.notna(first[c].iloc[0])}
        rows.append({
            **stats.loc[method].to_dict(),
            "search_ok": int((s.status == "ok").sum()),
            "search_failed": int((s.status != "ok").sum()),
            "best_config": ", ".join(f"{k}={_fmt(v)}" for k, v in best.items()),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _fmt(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)

