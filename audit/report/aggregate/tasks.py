"""Several study folders read as tasks: each folder is one (data set, teacher -> student) task
with every method's confirmation runs and its teacher's accuracy, and the check that the folders
share one budget apart from what makes them different tasks."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audit import folder as study_folder
from audit.errors import AuditError
from audit.judge.aggregate import Pair
from audit.report.format import finite
from audit.report.runs import collect_runs

# What makes folders different tasks, and may differ: the data set, the pair, the methods' own
# options (an extra teacher for a pair) and the statistics settings. Everything else in a
# study's budget must be equal for the folders' numbers to be put side by side.
TASK_KEYS = ("dataset", "teacher", "student", "options")
BUDGET_KEYS = ("trials", "seeds", "search_seed", "split_seed", "val_fraction", "teacher_seed", "recipe",
               "paper_protocol", "max_concurrent")


@dataclass
class Task:
    """One study folder as a task of the aggregate."""

    name: str  # how tables and figures name the task
    folder: study_folder.StudyFolder
    runs: dict[str, np.ndarray]  # last-epoch test accuracy of each method's confirmation runs
    teacher_acc: float  # the teacher's test accuracy (teacher.json), NaN when not recorded

    @property
    def budget(self) -> dict:
        return {k: self.folder.study.get(k) for k in BUDGET_KEYS}

    def pair(self, method: str, ref: str) -> Pair:
        empty = np.array([], dtype=float)
        return Pair(self.runs.get(method, empty), self.runs.get(ref, empty), self.teacher_acc)


def _label(f: study_folder.StudyFolder) -> str:
    return f"{f.get('dataset')}: {f.get('teacher')} → {f.get('student')}"


def _budget_differences(tasks: list[Task]) -> list[str]:
    out = []
    for key in BUDGET_KEYS:
        values = [json.dumps(t.budget[key], sort_keys=True) for t in tasks]
        if len(set(values)) > 1:
            out.append(f"{key}: " + ", ".join(f"{t.folder.name} {v}" for t, v in zip(tasks, values)))
    return out


def load_tasks(dirs: list[Path], *, allow_unequal: bool = False) -> tuple[list[Task], list[str]]:
    """(tasks, warnings). Refuses (AuditError) fewer than two folders, a folder given twice,
    a folder without confirmation runs, and folders made under different budgets unless
    ``allow_unequal``, in which case the warnings say so."""
    if len(dirs) < 2:
        raise AuditError(f"audit aggregate needs at least two study folders; got {len(dirs)} "
                         "(one folder is what `audit report` is for)")
    resolved = [Path(d).resolve() for d in dirs]
    twice = sorted({str(d) for d in resolved if resolved.count(d) > 1})
    if twice:
        raise AuditError(f"study folder given more than once: {', '.join(twice)}")
    folders = [study_folder.load(d) for d in dirs]
    labels = [_label(f) for f in folders]
    tasks = []
    for f, label in zip(folders, labels):
        runs = {m: np.asarray(r.test_last, float) for m, r in collect_runs(f).items() if r.test_last}
        if not runs:
            raise AuditError(f"{str(f.path)!r} has no finished confirmation run to aggregate")
        acc = (f.teacher or {}).get("test_acc")
        name = label if labels.count(label) == 1 else f"{label} ({f.name})"
        tasks.append(Task(name, f, runs, float(acc) if finite(acc) else math.nan))
    warnings = []
    differences = _budget_differences(tasks)
    if differences:
        message = f"the study folders were made under different budgets ({'; '.join(differences)})"
        if not allow_unequal:
            raise AuditError(f"{message}; refusing to aggregate them (pass --allow-unequal-budgets to aggregate anyway)")
        warnings.append(f"UNEQUAL BUDGETS: {message}; aggregated anyway, as asked: a method's numbers on the "
                        f"folders are not equally tuned, trained or confirmed.")
    return tasks, warnings


def methods_of(tasks: list[Task]) -> list[str]:
    """Every method with a confirmation run in any task, in the first folders' order."""
    return list(dict.fromkeys(m for t in tasks for m in t.folder.all_methods if m in t.runs))
