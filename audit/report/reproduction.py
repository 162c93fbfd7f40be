"""The report of a reproduction folder (``audit reproduce``; ``study.toml`` with
``kind = "reproduce"``): the two arms per claim, the teacher check, each claim's protocol with its
departures, and provenance. The equal-budget studies in its sub-folders keep their own full
reports. Never imports torch.
"""
from __future__ import annotations

import json
from pathlib import Path

from audit import folder as study_folder
from audit.errors import AuditError
from audit.report.document import Block, Section
from audit.report.machine import read_machine
from audit.report.render import write_document
from audit.report.sections.arms import arms_section
from audit.report.sections.protocols import protocols_section
from audit.report.sections.teacher_check import teacher_table
from audit.reproduce.plan import KIND


def is_reproduction(folder: study_folder.StudyFolder) -> bool:
    return folder.study.get("kind") == KIND


def audit_folders(rep_dir: Path) -> list[study_folder.StudyFolder]:
    """The equal-budget studies inside a reproduction folder."""
    out = []
    for sub in sorted(p for p in Path(rep_dir).iterdir() if p.is_dir() and (p / study_folder.STUDY).is_file()):
        try:
            out.append(study_folder.load(sub))
        except AuditError:
            continue
    return out


def _teachers(rep_dir: Path) -> dict:
    path = Path(rep_dir) / "teachers.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def write_reproduction_report(rep_dir: Path, *, margin: float, alpha: float) -> Path:
    folder = study_folder.load(rep_dir)
    study = folder.study
    protocols = list(study.get("protocols", []))
    records = [r for r in folder.records if r.get("phase") == "published"]
    audits = audit_folders(rep_dir)
    done = {p["claim_id"]: sum(1 for r in records if r.get("claim_id") == p["claim_id"]) for p in protocols}
    head = [Block("p", f"Reproduction of {len(protocols)} claim(s): "
                       + "; ".join(f"{p['claim_id']} {p['method']} {p['teacher']} → {p['student']} ({done[p['claim_id']]}/"
                                   f"{len(p['seeds'])} runs)" for p in protocols)
                       + f". Backend {study.get('backend')}; equal-budget arm {'run' if study.get('with_audit') else 'not run'}.")]
    complete = all(done[p["claim_id"]] >= len(p["seeds"]) for p in protocols)
    if not complete:
        head.append(Block("warn", "This reproduction is incomplete: every number below uses only the runs recorded so far."))
    for p in folder.problems:
        head.append(Block("warn", p))

    sections = [arms_section(protocols, records, audits, margin=margin, alpha=alpha, with_audit=bool(study.get("with_audit")))]
    teachers = _teachers(rep_dir)
    tsec = Section("teachers", 2, "Teachers", short="Teachers")
    rows = [(p["claim_id"], p["teacher"], teachers.get(p["claim_id"]), p.get("teacher_top1"))
            for p in protocols if p["claim_id"] in teachers]
    if rows:
        teacher_table(tsec, rows, margin)
    else:
        tsec.p("No claim here distils from a teacher, or no teacher has been recorded yet.")
    for f in audits:
        if f.teacher:
            tsec.note(f"The equal-budget study {f.name} has its own teacher: test accuracy {f.teacher.get('test_acc', float('nan')):.2f} % "
                      "(its report checks it against the claims).")
    sections.append(tsec)
    sections.append(protocols_section(protocols, 3))
    prov = Section("provenance", 4, "Provenance", short="Provenance")
    for f in audits:
        prov.p(f"Equal-budget study {f.name}: its own report is {f.name}/index.html.")
    facts, problem = read_machine(folder.path)
    if facts is not None:
        prov.kv([(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in facts.items()])
    elif problem is not None:
        prov.warn(problem)
    prov.p("The full reproduction (study.toml):")
    prov.pre(folder.toml_text)
    sections.append(prov)

    return write_document(Path(rep_dir), f"KD reproduction report: {folder.name}", head, sections, complete)
