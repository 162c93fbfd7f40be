"""The reproducibility report of a study folder: ``index.html`` (one self-contained page),
``report.md`` (the same tables, for pasting into a review or an issue), ``tables/*.csv`` and
``figures/*.png``.

Everything is read from the study folder itself, the journal (``trials.jsonl``) first, so a
study that is still running or was interrupted can be reported: the page says how far it got.
Sections, in order (one module each under ``sections/``): verdicts (with the teacher check),
method ranking, equal-budget curves, hyper-parameter sensitivity, cross-architecture matrix,
budget and compute, provenance. A reproduction's folder (``audit reproduce``) gets its own report
(``audit.report.reproduction``).
Writing a report never imports torch.
"""
from __future__ import annotations

from pathlib import Path

from audit import folder as study_folder
from audit.errors import AuditError, unknown
from audit.judge.claim import DEFAULT_ALPHA, DEFAULT_MARGIN
from audit.judge.claim_model import NOISES
from audit.judge.claims import load_claims
from audit.judge.multiple import ADJUSTMENTS
from audit.report import figures
from audit.report.format import finite
from audit.report.render import write_document
from audit.report.reproduction import is_reproduction, write_reproduction_report
from audit.report.runs import collect_runs
from audit.report.sections.budget import budget_section
from audit.report.sections.curves import budget_curves_section
from audit.report.sections.header import header
from audit.report.sections.matrix import matrix_section
from audit.report.sections.provenance import provenance_section
from audit.report.sections.ranking import ranking_section
from audit.report.sections.sensitivity import sensitivity_section
from audit.report.sections.teacher_check import study_teacher_check
from audit.report.sections.verdicts import verdict_section
from audit.report.settings import SPREADS, Settings


def _registered(study: dict, key: str) -> float | None:
    value = study.get(key)
    return float(value) if finite(value) else None


def write_report(study_dir: Path, *, margin: float | None = None, alpha: float | None = None, correction: str = "bh",
                 claims_path: Path | None = None, noise: str = "shared", spread: str = "runs") -> Path:
    """Write the report of the study in ``study_dir`` (finished or not); return index.html's path.

    Writes ``index.html``, ``report.md``, ``tables/*.csv`` and ``figures/*.png`` into the folder.
    ``margin``/``alpha`` are those of the claim verdicts, by default the ones the study fixed in
    study.toml before its runs (other values are allowed, and every verdict then says so);
    ``correction`` (bh or holm) adjusts the p-values of every verdict in the report together;
    ``noise`` is how a claim's own noise is modelled (shared, welch, exact) and ``spread`` where
    the seed spread comes from (runs: each method's own, study: pooled over the study's methods).
    """
    if correction not in ADJUSTMENTS:
        raise unknown("p-value correction", correction, ADJUSTMENTS)
    if noise not in NOISES:
        raise unknown("claim noise model", noise, NOISES)
    if spread not in SPREADS:
        raise unknown("seed spread source", spread, SPREADS)
    folder = study_folder.load(study_dir)
    margin_reg, alpha_reg = _registered(folder.study, "margin"), _registered(folder.study, "alpha")
    margin = margin if margin is not None else (margin_reg if margin_reg is not None else DEFAULT_MARGIN)
    alpha = alpha if alpha is not None else (alpha_reg if alpha_reg is not None else DEFAULT_ALPHA)
    if not (finite(margin) and margin > 0):
        raise AuditError(f"margin must be a positive number of accuracy points; got {margin}")
    if not (finite(alpha) and 0 < alpha < 0.5):
        raise AuditError(f"alpha must be between 0 and 0.5 (exclusive); got {alpha}")
    if is_reproduction(folder):  # `audit reproduce`'s folder: the two arms per claim
        return write_reproduction_report(Path(study_dir), margin=margin, alpha=alpha)
    settings = Settings(margin, alpha, correction, claims_path, margin_registered=margin_reg,
                        alpha_registered=alpha_reg, noise=noise, spread=spread)
    runs = collect_runs(folder)
    colour = figures.colours(folder.all_methods)
    prog = study_folder.progress(folder)
    head, complete = header(folder, prog)
    try:
        registry = load_claims(claims_path)
    except AuditError:
        registry = None

    verdicts = verdict_section(folder, runs, settings, registry)  # first: it counts the tests the others show
    study_teacher_check(verdicts, folder, registry, settings.margin)
    sections = [
        verdicts,
        ranking_section(folder, runs, colour),
        budget_curves_section(folder, runs, colour),
        sensitivity_section(folder, runs, colour, registry),
        matrix_section(folder),
        budget_section(folder, prog, colour),
        provenance_section(folder, settings),
    ]

    return write_document(Path(study_dir), f"KD reproducibility report: {folder.name}", head, sections, complete)
