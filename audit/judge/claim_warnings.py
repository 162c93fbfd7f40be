"""Sanity warnings about published claims: unmapped names, a student above its teacher, sources
that disagree, gains within seed noise, assumed selection rules, no variance reported."""
from __future__ import annotations

import math
from collections import defaultdict

import pandas as pd

from audit.judge.claims import _key, _typed
from methods.catalogue import BASELINE

# Typical seed-to-seed standard deviation of a CIFAR student's test accuracy, in points
# (0.2-0.4 across the CRD/DKD benchmark runs); a claimed gain below it is within seed noise.
# The README's power figure assumes the same spread.
SEED_SPREAD = 0.3



def _decimals(x: float) -> int:
    for d in range(4):
        if abs(x * 10**d - round(x * 10**d)) < 1e-6:
            return d
    return 4


def _same(a: float, b: float) -> bool:
    """Equal up to the rounding of the coarser of the two printed numbers (90.4 vs 90.43)."""
    return abs(a - b) <= 0.5 * 10 ** -min(_decimals(a), _decimals(b)) + 1e-9


def _ident(row: pd.Series, field: str) -> str:
    return row[f"{field}_id"] or f"?{_key(row[field])}"


def _epochs_compatible(a: object, b: object) -> bool:
    return pd.isna(a) or pd.isna(b) or int(a) == int(b)


def sanity_warnings(df: pd.DataFrame) -> list[str]:
    """Warnings about the claims in ``df``, each starting with its claim id.

    Unmapped names; no claimed number; a student claimed at or above its teacher; the same
    method, pair and data set (and compatible epochs) with numbers that differ beyond rounding
    between sources; a claimed gain over the no-KD baseline (the source's, or the same paper's
    nokd claim) below ``SEED_SPREAD``; an assumed selection rule; no variance reported.
    """
    if df.empty:
        return []
    if not pd.api.types.is_float_dtype(df["claimed_top1"]):  # a text frame straight from a CSV
        df = _typed(df.fillna(""))
    by_claim: dict[str, list[str]] = defaultdict(list)

    def nice(row: pd.Series) -> str:
        return f"{row['method']} {row['teacher']}->{row['student']} on {row['dataset']}"

    # groups for conflicts and for baselines from a nokd claim
    groups: dict[tuple, list[pd.Series]] = defaultdict(list)
    nokd: dict[tuple, list[pd.Series]] = defaultdict(list)
    for _, row in df.iterrows():
        groups[(_ident(row, "dataset"), _ident(row, "teacher"), _ident(row, "student"),
                _ident(row, "method"))].append(row)
        if row["method_id"] == BASELINE and not pd.isna(row["claimed_top1"]):
            nokd[(row["paper"], _ident(row, "dataset"), _ident(row, "student"))].append(row)

    for _, row in df.iterrows():
        cid, claimed = row["claim_id"], row["claimed_top1"]
        out = by_claim[cid]
        if row["mapping_status"] != "ok":
            out.append(f"{cid}: {row['mapping_status']}; kept, but it cannot be matched to a study")
        if pd.isna(claimed):
            out.append(f"{cid}: no claimed number in the source (claimed_top1 is empty or N/A)")
            continue
        teacher_acc = row["teacher_top1"]
        if not pd.isna(teacher_acc) and claimed >= teacher_acc:
            same = " (same architecture: self-distillation)" if _key(row["teacher"]) == _key(row["student"]) else ""
            out.append(f"{cid}: student claimed at or above its teacher ({claimed:g} vs teacher "
                       f"{teacher_acc:g}){same}")
        key = (_ident(row, "dataset"), _ident(row, "teacher"), _ident(row, "student"), _ident(row, "method"))
        clashes = [o for o in groups[key]
                   if o["claim_id"] != cid and o["source"] != row["source"] and not pd.isna(o["claimed_top1"])
                   and _epochs_compatible(o["epochs"], row["epochs"]) and not _same(o["claimed_top1"], claimed)]
        if clashes:
            others = "; ".join(f"{o['claimed_top1']:g} in {o['claim_id']} ({o['source']})" for o in clashes)
            out.append(f"{cid}: {nice(row)} claims {claimed:g} here ({row['source']}) but {others}")
        if row["method_id"] != BASELINE:
            base = row["baseline_student_top1"]
            if pd.isna(base):
                cands = [o["claimed_top1"] for o in nokd.get((row["paper"], _ident(row, "dataset"), _ident(row, "student")), [])
                         if _epochs_compatible(o["epochs"], row["epochs"])]
                # several candidate baselines (e.g. 200 and 350 epochs): warn only if the gain is
                # small against the lowest one too
                base = min(cands) if cands else math.nan
            gain = claimed - base
            if not pd.isna(base) and gain <= 0:
                out.append(f"{cid}: claimed number is not above the no-KD baseline ({gain:+.2f} points)")
            elif not pd.isna(base) and gain < SEED_SPREAD:
                out.append(f"{cid}: claimed gain over the no-KD baseline ({gain:+.2f} points) is smaller "
                           f"than the typical seed spread of {SEED_SPREAD} points")
        if row["rule_basis"] != "stated":
            out.append(f"{cid}: selection rule {row['rule_basis']}; taken as {row['rule']}")
        if pd.isna(row["claimed_std"]):
            runs = row["claimed_runs"]
            how = ("runs unknown" if pd.isna(runs) else "a single run" if runs == 1 else f"{runs} runs")
            out.append(f"{cid}: no variance reported ({how})")
    return [w for cid in df["claim_id"] for w in by_claim[cid]]
