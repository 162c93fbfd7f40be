"""The printed summary of a study: each method's confirmed test accuracy against the references."""
from __future__ import annotations

import math

import pandas as pd

SUMMARY_COLUMNS = ["method", "runs", "test_mean", "test_std", "vs_nokd", "vs_kd", "search_ok", "search_failed", "best_config"]


def summarise(results: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """Mean and std of last-epoch test accuracy over confirmation seeds; gains over nokd and kd.

    Rows follow ``methods`` (the study's order) so that the table does not depend on which
    concurrent trial happened to finish first; methods not listed follow in journal order."""
    if results.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    conf = results[(results.phase == "confirm") & (results.status == "ok")]
    search = results[results.phase == "search"]
    means = conf.groupby("method")["test_acc_last"].mean()
    rows = []
    for method in dict.fromkeys([*(methods or []), *results.method]):
        acc = conf.loc[conf.method == method, "test_acc_last"].astype(float)
        s = search[search.method == method]
        hp_cols = [c for c in conf.columns if c.startswith("hp_")]
        first = conf[conf.method == method].head(1)
        best = {c[3:]: first[c].iloc[0] for c in hp_cols if not first.empty and pd.notna(first[c].iloc[0])}
        mean = float(acc.mean()) if len(acc) else math.nan
        rows.append({
            "method": method,
            "runs": len(acc),
            "test_mean": mean,
            "test_std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
            "vs_nokd": mean - means.get("nokd", math.nan),
            "vs_kd": mean - means.get("kd", math.nan),
            "search_ok": int((s.status == "ok").sum()),
            "search_failed": int((s.status != "ok").sum()),
            "best_config": ", ".join(f"{k}={_fmt(v)}" for k, v in best.items()),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _fmt(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
