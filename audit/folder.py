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
import tempfile
import time
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
REPAIRS = "repairs.json"  # what resumes found damaged (torn journal lines, a rebuilt Optuna storage) and did about it
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


def check_writable(path: Path, what: str) -> None:
    """Fail now, with one line, when ``path`` (a folder, made later if missing) could not be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AuditError(f"{what} {str(path)!r} is a file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AuditError(f"{what} {str(path)!r} cannot be made: {str(existing)!r} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".kd-audit-probe-", dir=existing))
    except OSError as exc:
        raise AuditError(f"{what} {str(path)!r} cannot be written: {exc.strerror or exc} (in {str(existing)!r})") from None


def check_new(study: Study, out: Path) -> None:
    """The checks of ``create`` made before any work: ``out`` can be written and holds no such study."""
    check_writable(out, "--out")
    if (Path(out) / study.name).exists():
        raise AuditError(f"study folder {str(Path(out) / study.name)!r} exists; choose another --name (or resume it)")


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


def repair(study_dir: Path) -> bool:
    """End a line torn by a kill mid-write, so the next record is not glued onto it (and lost with
    it); returns whether there was one."""
    path = study_dir / JOURNAL
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
                return True
    return False


def torn_lines(study_dir: Path) -> int:
    """How many lines of the journal cannot be read (torn by a kill, or damaged)."""
    path = study_dir / JOURNAL
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text(errors="replace").splitlines() if not _decode(line))


def note_repair(study_dir: Path, repair: dict) -> None:
    """Keep what a resume found damaged and how it was mended (``repairs.json``, for the report)."""
    write_json(study_dir, REPAIRS, [*read_repairs(study_dir), {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), **repair}])


def read_repairs(study_dir: Path) -> list[dict]:
    try:
        found = json.loads((study_dir / REPAIRS).read_text())
    except (OSError, ValueError):
        return []
    return found if isinstance(found, list) else []


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
    return [r for r in map(_decode, path.read_text(errors="replace").splitlines()) if r]


def _decode(line: str) -> dict | None:
    """A journal line's record, or ``None`` for a line torn by a kill mid-write (or damaged)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "method" in record and "phase" in record else None


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


def canonical(found: list[dict], methods: list[str]) -> list[dict]:
    """Records in an order that does not depend on when each finished (concurrent runs, resumes):
    search before confirmation, methods in the study's order, then trial (its place in the
    budget) and seed; records of one place keep the journal's order."""
    rank = {m: i for i, m in enumerate(dict.fromkeys([*methods, *(r["method"] for r in found)]))}
    key = lambda r: (r["phase"] != "search", rank[r["method"]], _int(r.get("trial")), _int(r.get("seed")))  # noqa: E731
    return sorted(found, key=key)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def write_tables(study_dir: Path, methods: list[str] | None = None) -> pd.DataFrame:
    """``results.csv`` and ``curves.csv`` from the journal, in the canonical order; returns the results."""
    found = canonical(read(study_dir), methods or [])
    df = results_frame(found)
    for name, frame in (("results.csv", df), ("curves.csv", curves_frame(found))):
        write_atomic(study_dir / name, frame.to_csv(index=False))
    return df
