"""The study's record of finished runs: ``trials.jsonl`` (append-only, one JSON object a run),
from which ``results.csv`` and ``curves.csv`` are written.

Appending one line per finished run means a study killed at any moment keeps every run it
finished, and nothing is half-written: a torn last line is ignored on reading.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

JOURNAL = "trials.jsonl"
RESULT_COLUMNS = [
    "method", "phase", "trial", "seed", "status", "reason",
    "val_acc_best", "val_acc_last", "test_acc_best", "test_acc_last", "best_epoch",
    "epochs", "pretrain_epochs", "steps", "images", "flops", "wall_s", "budget_hash", "accel",
]


def append(study_dir: Path, record: dict) -> None:
    line = json.dumps(record, sort_keys=True, default=float) + "\n"
    with open(study_dir / JOURNAL, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read(study_dir: Path) -> list[dict]:
    path = study_dir / JOURNAL
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
    return records


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per search trial and confirmation run, hyper-parameters as ``hp_<name>`` columns."""
    rows = []
    for r in records:
        row = {k: r.get(k) for k in RESULT_COLUMNS}
        row.update({f"hp_{k}": v for k, v in sorted(r.get("config", {}).items())})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    for col in ("trial", "seed"):  # integers, blank where not applicable (NaN would make them floats)
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    hp_cols = sorted(c for c in df.columns if c.startswith("hp_"))
    return df[RESULT_COLUMNS + hp_cols]


def curves_frame(records: list[dict]) -> pd.DataFrame:
    """Per-epoch accuracies of every run (claims chosen by a per-epoch rule need them)."""
    rows = []
    for r in records:
        test = r.get("test_curve") or []
        for i, v in enumerate(r.get("val_curve") or []):
            rows.append({
                "method": r["method"], "phase": r["phase"], "trial": r.get("trial"), "seed": r.get("seed"),
                "epoch": i + 1, "val_acc": v, "test_acc": test[i] if i < len(test) else None,
            })
    return pd.DataFrame(rows, columns=["method", "phase", "trial", "seed", "epoch", "val_acc", "test_acc"])


def write_tables(study_dir: Path) -> pd.DataFrame:
    records = read(study_dir)
    df = results_frame(records)
    for name, frame in (("results.csv", df), ("curves.csv", curves_frame(records))):
        tmp = study_dir / f".{name}.tmp"
        frame.to_csv(tmp, index=False)
        os.replace(tmp, study_dir / name)
    return df
