"""The study folder, ``reports/<name>/``: the one module that creates, reads and writes it.

What it holds: ``study.toml`` (the resolved study), ``spaces.json`` (each method's search space,
so a report never needs the method code), ``trials.jsonl`` (the append-only record of every
search trial and confirmation run, written before Optuna is told), ``results.csv`` and
``curves.csv`` (tables made from the journal), ``driver_id``, ``teacher.json``, ``timings.json``,
``budget_warnings.txt`` and the report.

Appending one line per finished run means a study killed at any moment keeps every run it
finished; a line torn by a kill is ended on resume (``repair``) and skipped on reading.
Torch-free: the report reads a folder without loading any model code.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from audit.errors import AuditError
from methods.catalogue import REFERENCES

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from audit.study import Study

STUDY = "study.toml"
JOURNAL = "trials.jsonl"
SPACES = "spaces.json"
DRIVER_ID = "driver_id"  # the id this folder's trials carry as Optuna user attr "driver"
RESULT_COLUMNS = [
    "method", "phase", "trial", "seed", "status", "reason",
    "val_acc_best", "val_acc_last", "val_nll", "objective", "test_acc_best", "test_acc_last", "best_epoch",
    "epochs", "pretrain_epochs", "steps", "images", "flops", "wall_s", "budget_hash", "accel",
]


# ---------------------------------------------------------------------------------------------
# creating and writing
# ---------------------------------------------------------------------------------------------


def create(study: Study, out: Path, spaces: Mapping[str, Mapping[str, BaseDistribution]]) -> Path:
    """Make ``out/<study.name>`` holding ``study.toml`` and ``spaces.json``, all or nothing."""
    from optuna.distributions import distribution_to_json

    study_dir = out / study.name
    if study_dir.exists():
        raise AuditError(f"study folder {str(study_dir)!r} exists; choose another --name (or resume it)")
    out.mkdir(parents=True, exist_ok=True)
    # Made under a temporary name and renamed once complete: never a half-made folder.
    tmp = out / f".{study.name}.creating-{os.getpid()}"
    tmp.mkdir()
    try:
        study.write(tmp / STUDY)
        encoded = {m: {k: json.loads(distribution_to_json(d)) for k, d in space.items()} for m, space in spaces.items()}
        (tmp / SPACES).write_text(json.dumps(encoded, indent=1))
        os.replace(tmp, study_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return study_dir


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write next to the target, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def write_json(study_dir: Path, name: str, value: object) -> None:
    write_atomic(study_dir / name, json.dumps(value, indent=2))


def append(study_dir: Path, record: dict) -> None:
    """Add one finished run to the journal, synced to disk before returning."""
    line = json.dumps(record, sort_keys=True, default=float) + "\n"
    with open(study_dir / JOURNAL, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def repair(study_dir: Path) -> None:
    """End a line torn by a kill mid-write, so the next record is not glued onto it (and lost with it)."""
    path = study_dir / JOURNAL
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def driver_id(study_dir: Path) -> str:
    """Who started a trial: an id kept in the study folder (so it survives moving the folder).
    Drivers sharing one storage, each with its own folder, each own their trials."""
    path = study_dir / DRIVER_ID
    if not path.exists():
        path.write_text(f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}\n")
    return path.read_text().strip()


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def read(study_dir: Path) -> list[dict]:
    """Every record of the journal, in the order written; a torn line is skipped."""
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


def records(study_dir: Path, method: str, phase: str = "search") -> list[dict]:
    """The journaled runs of one method in one phase (``search`` or ``confirm``)."""
    return [r for r in read(study_dir) if r["method"] == method and r["phase"] == phase]


def read_spaces(study_dir: Path) -> dict[str, dict[str, BaseDistribution]] | None:
    """The search spaces the study was created with, or ``None`` for a folder made before they were kept."""
    from optuna.distributions import json_to_distribution

    path = study_dir / SPACES
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return {m: {k: json_to_distribution(json.dumps(d)) for k, d in space.items()} for m, space in raw.items()}


@dataclass
class StudyFolder:
    """What a study folder holds, read without assuming the study finished."""

    path: Path
    toml_text: str
    study: dict  # study.toml as written
    records: list[dict]
    teacher: dict | None
    timings: dict | None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.study.get("name", self.path.name))

    @property
    def methods(self) -> list[str]:
        """The audited methods: the study's own list without the references, unless it audits
        only references (e.g. ``--method kd``)."""
        listed = [str(m) for m in self.study.get("methods", [])]
        return [m for m in listed if m not in REFERENCES] or listed

    @property
    def all_methods(self) -> list[str]:
        """References first, then the study's methods, then any other method the journal holds."""
        listed = [*REFERENCES, *[str(m) for m in self.study.get("methods", [])]]
        return list(dict.fromkeys([*listed, *(str(r.get("method")) for r in self.records)]))

    @property
    def trials(self) -> int:
        return int(self.study.get("trials", 0))

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.study.get("seeds", [])]

    @property
    def epochs(self) -> int | None:
        e = self.study.get("recipe", {}).get("epochs")
        return int(e) if e is not None else None

    def get(self, key: str, default: str = "?") -> str:
        return str(self.study.get(key, default))

    def search(self, method: str) -> list[dict]:
        return [r for r in self.records if r.get("method") == method and r.get("phase") == "search"]

    def confirm(self, method: str) -> list[dict]:
        return [r for r in self.records if r.get("method") == method and r.get("phase") == "confirm"]

    def spaces(self) -> dict[str, dict[str, BaseDistribution]] | None:
        return read_spaces(self.path)


def load(study_dir: Path | str) -> StudyFolder:
    """Read a study folder; a folder without a readable ``study.toml`` is not a study."""
    path = Path(study_dir)
    if not path.is_dir():
        raise AuditError(f"{str(path)!r} is not a folder; give a study folder, e.g. reports/<name>")
    toml_path = path / STUDY
    if not toml_path.is_file():
        raise AuditError(f"{str(path)!r} is not a study folder (no study.toml); give reports/<name> as written by `audit run`")
    try:
        text = toml_path.read_text()
        study = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"cannot read {str(toml_path)!r}: {exc}") from None
    problems: list[str] = []
    found = [r for r in read(path) if isinstance(r, dict) and "method" in r and "phase" in r]

    def optional_json(name: str) -> dict | None:
        p = path / name
        if not p.is_file():
            return None
        try:
            value = json.loads(p.read_text())
            return value if isinstance(value, dict) else None
        except (OSError, ValueError) as exc:
            problems.append(f"{name} could not be read ({type(exc).__name__}); its part of the report is missing")
            return None

    return StudyFolder(path, text, study, found, optional_json("teacher.json"), optional_json("timings.json"), problems)


def progress(folder: StudyFolder) -> pd.DataFrame:
    """How far each method got against the study's budget."""
    rows = []
    n_seeds = len(folder.seeds)
    for m in folder.all_methods:
        s, c = folder.search(m), folder.confirm(m)
        s_ok = sum(1 for r in s if r.get("status") == "ok")
        c_done = len({r.get("seed") for r in c})
        searched = len(s) >= folder.trials
        if not s and not c:
            state = "not started"
        elif not searched:
            state = "searching"
        elif s_ok == 0:
            state = "every search trial failed"
        elif c_done < n_seeds:
            state = "confirming"
        else:
            state = "complete"
        rows.append({"method": m, "search_trials": len(s), "search_ok": s_ok, "search_failed": len(s) - s_ok,
                     "trials_budget": folder.trials, "confirm_runs": c_done, "seeds_budget": n_seeds, "state": state})
    return pd.DataFrame(rows)


def is_complete(prog: pd.DataFrame) -> bool:
    return bool(len(prog)) and bool(prog.state.isin(["complete", "every search trial failed"]).all())


# ---------------------------------------------------------------------------------------------
# tables made from the journal
# ---------------------------------------------------------------------------------------------


def results_frame(found: list[dict]) -> pd.DataFrame:
    """One row per search trial and confirmation run, hyper-parameters as ``hp_<name>`` columns."""
    rows = []
    for r in found:
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


def curves_frame(found: list[dict]) -> pd.DataFrame:
    """Per-epoch accuracies of every run (claims chosen by a per-epoch rule need them)."""
    rows = []
    for r in found:
        test, nll = r.get("test_curve") or [], r.get("val_nll_curve") or []
        for i, v in enumerate(r.get("val_curve") or []):
            rows.append({
                "method": r["method"], "phase": r["phase"], "trial": r.get("trial"), "seed": r.get("seed"),
                "epoch": i + 1, "val_acc": v, "val_nll": nll[i] if i < len(nll) else None,
                "test_acc": test[i] if i < len(test) else None,
            })
    return pd.DataFrame(rows, columns=["method", "phase", "trial", "seed", "epoch", "val_acc", "val_nll", "test_acc"])


def write_tables(study_dir: Path) -> pd.DataFrame:
    """``results.csv`` and ``curves.csv`` from the journal; returns the results."""
    found = read(study_dir)
    df = results_frame(found)
    for name, frame in (("results.csv", df), ("curves.csv", curves_frame(found))):
        write_atomic(study_dir / name, frame.to_csv(index=False))
    return df
