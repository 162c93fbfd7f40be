"""Section 7, provenance: what was studied (data, split, seeds, teacher and its checkpoint), how
it was judged, the machine that ran the study (``machine.json``, when the folder has one), the
machine that wrote the report, and the full resolved study."""
from __future__ import annotations

import json
import os
import platform
import time

from audit.folder import StudyFolder
from audit.judge.tuning import RANK_CI
from audit.report import machine
from audit.report.document import Section
from audit.report.format import fmt
from audit.report.settings import CORRECTIONS, SPREADS, Settings


def _study_facts(folder: StudyFolder, settings: Settings) -> list[tuple[str, str]]:
    study = folder.study
    t = folder.teacher or {}
    ident = t.get("ident", {}) if isinstance(t.get("ident"), dict) else {}
    return [
        ("study", folder.name),
        ("budget hash", str(study.get("budget_hash", "—"))),
        ("data set", f"{folder.get('dataset')} (sha256 {ident.get('data_sha256', 'not recorded')})"),
        ("split", f"split seed {folder.get('split_seed')}, validation fraction {folder.get('val_fraction')}"),
        ("confirmation seeds", ", ".join(str(s) for s in folder.seeds)),
        ("search seed", folder.get("search_seed")),
        ("teacher", f"{folder.get('teacher')} seed {folder.get('teacher_seed')}"
         + (f": val {fmt(t.get('val_acc'))} %, test {fmt(t.get('test_acc'))} %, {t.get('epochs', '?')} epochs" if t else ": no teacher.json")),
        ("teacher checkpoint", f"{t.get('key', '—')} (sha256 {t.get('sha256', '—')}), created {t.get('created', '—')} "
         f"on host {t.get('host', '—')} with torch {t.get('torch', '—')}" if t else "—"),
        ("teacher recipe", json.dumps(ident.get("recipe", {}), sort_keys=True) if ident else "—"),
        ("statistics", f"equivalence margin and level {settings.judged_at()}, "
                       f"p-value correction: {CORRECTIONS[settings.correction]} over {settings.n_tests} test(s), "
                       f"claim noise model {settings.noise}, seed spread from {SPREADS[settings.spread]}, "
                       f"ranking intervals {RANK_CI:.0%} t"),
    ]


def _gpus(names: object) -> str:
    return ", ".join(str(n) for n in names) if isinstance(names, list) and names else "none"


def _ran_on(facts: dict) -> list[tuple[str, str]]:
    """``machine.json`` as the report shows it; a missing key reads "not recorded"."""
    def get(key: str) -> str:
        value = facts.get(key)
        return "not recorded" if value is None or value == "" else str(value)

    packages = facts.get("packages")
    gpus = f"{_gpus(facts.get('gpus'))} (probed with {get('gpus_from')})" if "gpus" in facts else "not recorded"
    if facts.get("cuda"):
        gpus += f", CUDA {facts['cuda']}"
    return [
        ("kd-audit", f"{get('kd-audit')}, git commit {get('git_commit')}"),
        ("python", f"{get('python')} on {get('platform')}"),
        ("packages", ", ".join(f"{p} {v}" for p, v in packages.items()) if isinstance(packages, dict) else "not recorded"),
        ("CPU", f"{get('cpu')}, {get('cores')} logical cores"),
        ("GPU", gpus),
        ("host", get("host")),
        ("recorded", get("recorded")),
    ]


def _written_on() -> list[tuple[str, str]]:
    """The machine writing the report, as far as it is known without importing torch."""
    return [
        ("kd-audit", f"{machine.version('kd-audit')}, git commit {machine.git_commit()}"),
        ("python", f"{platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}"),
        ("packages", ", ".join(f"{p} {machine.version(p)}" for p in machine.PACKAGES)),
        ("CPU", f"{machine.cpu_model()}, {os.cpu_count()} logical cores"),
        ("GPU", _gpus(machine.gpus_without_torch())),
        ("generated", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
    ]


def provenance_section(folder: StudyFolder, settings: Settings) -> Section:
    sec = Section("provenance", 7, "Provenance", short="Provenance")
    sec.kv(_study_facts(folder, settings))
    facts, problem = machine.read_machine(folder.path)
    if facts is not None:
        sec.p(f"The machine that ran the study ({machine.MACHINE_JSON}, recorded when the study started):")
        sec.kv(_ran_on(facts))
    elif problem is not None:
        sec.warn(f"{problem}; the machine that ran the study is not known.")
    else:
        sec.note(f"This study folder has no {machine.MACHINE_JSON} (made before it was recorded): the machine that ran the "
                 "study is not known.")
    sec.p("The software and hardware below are those of the machine that wrote this report.")
    sec.kv(_written_on())
    sec.p("The full resolved study (study.toml):")
    sec.pre(folder.toml_text)
    return sec
