"""The teacher check: the teacher's test accuracy measured here beside the accuracy the claim
states for its teacher (the registry's ``teacher_top1``), with a warning when they differ by more
than the verdicts' margin. A student distilled from another teacher is not the claim's student:
a gap here explains a gap in the verdict before any method is blamed.
"""
from __future__ import annotations

import pandas as pd

from audit.folder import StudyFolder
from audit.report.document import Section, Table
from audit.report.format import finite, fmt


def _source_text(teacher: dict) -> str:
    source = teacher.get("source")
    if isinstance(source, dict):
        claimed = source.get("claimed_acc")
        said = f", the file says {fmt(claimed)} %" if finite(claimed) else ""
        return f"released: {str(source.get('path', '?')).rsplit('/', 1)[-1]}{said}"
    epochs = teacher.get("epochs")
    return f"trained here ({epochs} epochs)" if epochs is not None else "trained here"


def teacher_table(sec: Section, rows: list[tuple[str, str, dict | None, float | None]], margin: float) -> None:
    """One row per (claim, teacher architecture, teacher record, claimed teacher accuracy); warns
    once, naming every claim whose teacher is off by more than ``margin``."""
    cells, classes, frame, off = [], [], [], []
    for claim, arch, teacher, claimed in rows:
        measured = (teacher or {}).get("test_acc")
        diff = measured - claimed if finite(measured) and finite(claimed) else None
        bad = diff is not None and abs(diff) > margin
        if bad:
            off.append(f"{claim} ({fmt(measured)} % against {fmt(claimed)} %)")
        cells.append([claim, arch, fmt(measured), fmt(claimed), fmt(diff, "+.2f"),
                      _source_text(teacher) if teacher else "no teacher record", "off by more than the margin" if bad else
                      ("within the margin" if diff is not None else "—")])
        classes.append("flagged" if bad else "")
        frame.append({"claim_id": claim, "teacher": arch, "measured_test_acc": measured, "claimed_teacher_top1": claimed,
                      "difference": diff, "beyond_margin": bad})
    sec.table(Table(["claim", "teacher", "measured test acc (%)", "claimed teacher acc (%)", "difference (points)",
                     "teacher", "check"], cells, "teacher_check.csv", pd.DataFrame(frame), classes,
                    caption=f"The teacher measured on this study's test split against the claim's teacher (margin ±{margin:g} points)"))
    if off:
        sec.warn(f"The teacher differs from the claim's by more than ±{margin:g} points for {', '.join(off)}: the "
                 "students here learn from another teacher than the claim's, which alone can move their accuracy.")
    if not any(finite(c) for *_, c in rows):
        sec.note("No claim here states its teacher's accuracy, so the teacher cannot be checked against it.")


def study_teacher_check(sec: Section, folder: StudyFolder, registry: pd.DataFrame | None, margin: float) -> None:
    """For an equal-budget study: its teacher against every registry claim on the same data set
    and teacher architecture (their students may differ: the teacher is the same network)."""
    if registry is None or folder.teacher is None:
        return
    dataset, arch = folder.get("dataset"), folder.get("teacher")
    claims = registry[(registry.dataset_id == dataset) & (registry.teacher_id == arch) & registry.teacher_top1.notna()]
    if claims.empty:
        return
    # One row per distinct claimed teacher accuracy (a source states one number for many claims).
    firsts = claims.drop_duplicates(subset=["teacher_top1"])
    rows = [(f"{r.claim_id} ({r.source.split(':')[0]})", arch, folder.teacher, float(r.teacher_top1)) for r in firsts.itertuples()]
    teacher_table(sec, rows, margin)
