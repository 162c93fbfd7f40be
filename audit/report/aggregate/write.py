"""``write_aggregate``: the aggregate report of several study folders, written into its own folder
(``index.html``, ``report.md``, ``tables/*.csv``, ``figures/*.png``). Every check runs and every
section is built before the first file is written: bad input leaves nothing behind."""
from __future__ import annotations

from pathlib import Path

from audit import folder as study_folder
from audit.errors import AuditError, unknown
from audit.judge.aggregate import check_normalisable
from audit.judge.checks import check_level, check_margin
from audit.judge.claim import DEFAULT_ALPHA, DEFAULT_MARGIN
from audit.judge.multiple import ADJUSTMENTS
from audit.report import figures
from audit.report.aggregate import sections
from audit.report.aggregate.tasks import Task, load_tasks, methods_of
from audit.report.document import Block
from audit.report.render import write_document
from methods.catalogue import BASELINE


def _settings(tasks: list[Task], alpha: float | None, margin: float | None) -> tuple[float, float, str]:
    """alpha and margin: as given, else the ones every folder fixed before its runs."""
    registered = {(t.folder.study.get("alpha"), t.folder.study.get("margin")) for t in tasks}
    (reg_alpha, reg_margin), = registered if len(registered) == 1 else {(None, None)}
    if alpha is None and margin is None and reg_alpha is not None and reg_margin is not None:
        return float(reg_alpha), float(reg_margin), "pre-registered by every folder"
    a = alpha if alpha is not None else (float(reg_alpha) if reg_alpha is not None else DEFAULT_ALPHA)
    m = margin if margin is not None else (float(reg_margin) if reg_margin is not None else DEFAULT_MARGIN)
    if reg_alpha is None or reg_margin is None:
        return a, m, "not pre-registered: the folders fixed none, or different ones"
    if (a, m) == (float(reg_alpha), float(reg_margin)):
        return a, m, "pre-registered by every folder"
    return a, m, f"NOT the folders' pre-registered ±{float(reg_margin):g} points, alpha {float(reg_alpha):g}"


def write_aggregate(dirs: list[Path], out: Path, *, allow_unequal: bool = False, alpha: float | None = None,
                    margin: float | None = None, correction: str = "bh", normalise: bool = False) -> Path:
    """Judge every method across the study folders ``dirs`` and write the report into ``out``;
    return index.html's path."""
    if correction not in ADJUSTMENTS:
        raise unknown("p-value correction", correction, ADJUSTMENTS)
    if alpha is not None:
        check_level(alpha)
    if margin is not None:
        check_margin(margin)
    out = Path(out)
    if (out / study_folder.STUDY).exists():
        raise AuditError(f"{str(out)!r} is a study folder; give --out a folder of its own for the aggregate report")
    tasks, warnings = load_tasks(dirs, allow_unequal=allow_unequal)
    if any(out.resolve() == t.folder.path.resolve() for t in tasks):
        raise AuditError("--out must not be one of the study folders")
    a, m, registered = _settings(tasks, alpha, margin)
    opts = sections.Options(a, m, correction, normalise, registered)
    methods = methods_of(tasks)
    if BASELINE not in methods:
        raise AuditError(f"no folder has confirmation runs of the baseline {BASELINE}, which every score is measured against")
    if normalise:
        for t in tasks:
            check_normalisable({t.name: t.pair(BASELINE, BASELINE)})
    colour = figures.colours(methods)
    numbers = sections.compute(tasks, methods, opts)
    head = [Block("p", f"{len(tasks)} tasks: {'; '.join(t.name for t in tasks)}; {len(methods)} methods; every score "
                       f"is a {opts.unit} of one confirmation run (last-epoch test accuracy).")]
    head += [Block("warn", w) for w in warnings]
    secs = [sections.verdict_section(tasks, numbers, opts), sections.metrics_section(numbers, colour, opts),
            sections.profiles_section(tasks, methods, colour, opts), sections.matrix_section(tasks, methods),
            sections.folders_section(tasks, warnings)]

    subtitle = f"Aggregate of {len(tasks)} study folders" + (" (UNEQUAL BUDGETS)" if warnings else "")
    return write_document(out, f"KD aggregate report: {len(tasks)} tasks", head, secs, True, subtitle=subtitle)
