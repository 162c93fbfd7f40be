"""What the claims registry says a method gains over a reference: on this study's pair (from the
claim's own baseline, or the same source's classical-KD claim) and, for scale, anywhere else."""
from __future__ import annotations

import pandas as pd

from audit.folder import StudyFolder
from audit.judge.claims import filter_claims, matching_claims
from audit.report.format import finite
from methods.catalogue import BASELINE, CLASSICAL


def claimed_gain(claims: pd.DataFrame, ref: str, all_claims: pd.DataFrame | None) -> tuple[float | None, str]:
    """The gain over ``ref`` the matched claims state, and where it comes from: over the baseline
    from the claim's own baseline column, over classical KD from the same source's KD claim for
    the same pair."""
    for _, row in claims.iterrows():
        if ref == BASELINE and finite(row.get("baseline_student_top1")):
            return float(row["claimed_top1"] - row["baseline_student_top1"]), str(row["claim_id"])
        if ref == CLASSICAL and all_claims is not None:
            same = ((all_claims.source == row["source"]) & (all_claims.dataset_id == row["dataset_id"])
                    & (all_claims.teacher_id == row["teacher_id"]) & (all_claims.student_id == row["student_id"]))
            classical = all_claims[(all_claims.method_id == CLASSICAL) & same & all_claims.claimed_top1.notna()]
            if len(classical):
                gain = float(row["claimed_top1"] - classical.claimed_top1.iloc[0])
                return gain, f"{row['claim_id']} vs {classical.claim_id.iloc[0]}"
    return None, ""


def claimed_here(folder: StudyFolder, registry: pd.DataFrame | None) -> dict[str, float | None]:
    """Each method's claimed gain over the baseline on this study's data set and pair (``None``
    where no claim states one); empty without a registry."""
    out: dict[str, float | None] = {}
    if registry is None:
        return out
    for m in folder.all_methods:
        if m != BASELINE:
            matched = matching_claims(registry, m, folder.get("dataset"), folder.get("teacher"), folder.get("student"))
            out[m] = claimed_gain(matched, BASELINE, registry)[0] if len(matched) else None
    return out


def registry_gain(method: str, registry: pd.DataFrame | None) -> tuple[float, int] | None:
    """Median claimed gain over the baseline of ``method`` anywhere in the registry (all data
    sets), with the number of claims behind it."""
    if registry is None or method == BASELINE:
        return None
    rows = filter_claims(registry, method=method)
    gains = (rows.claimed_top1 - rows.baseline_student_top1).dropna()
    return (float(gains.median()), int(gains.size)) if gains.size else None
