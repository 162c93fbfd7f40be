"""Damaged state, detected and named. The journal (``trials.jsonl``) is written before Optuna is
told, so it is the record: the Optuna storage must agree with it on every trial this folder's
driver ran.

- A storage that disagrees (a missing or replaced ``optuna.journal``, a study missing from it, a
  trial whose value or parameters differ) is rebuilt from the journal when it is the study
  folder's own file (the damaged file is kept beside it), and refused with one line when it is a
  shared storage, which other drivers' trials live in too. An Optuna journal line torn by a kill
  is cut off first (the write it held never returned).
- A finished trial that Optuna knows but whose journal line was lost (torn, or cut off) is run
  again, on the same configuration and seed, so its record is whole (runs are pure functions of
  both); the re-run is marked in the journal.
- Unreadable journal lines are counted. What was found and done is kept in ``repairs.json``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from audit import folder
from audit.errors import AuditError
from audit.search.drivers import (
    CANCELLED,
    DRIVER,
    METRIC,
    STALE_REASON,
    slot_of,
    told_value,
)
from audit.search.storage import (
    SQLITE,
    end_torn_journal,
    method_study,
    open_storage,
    own_storage_file,
    redact,
    storage_url,
    study_name,
)

if TYPE_CHECKING:
    from audit.study import Study

REBUILT = "rebuilt from trials.jsonl"  # user attr on the Optuna trials of a rebuilt storage


def disagreements(study: Study, study_dir: Path, storage: optuna.storages.BaseStorage) -> list[str]:
    """Where the storage and the journal disagree about this folder's search trials."""
    found = []
    for method in study.all_methods:
        records = folder.records(study_dir, method)
        if not records:
            continue
        ostudy = method_study(storage, study.name, method)
        if ostudy is None:
            found.append(f"it has no Optuna study {study_name(study.name, method)!r}, whose {len(records)} trials "
                         f"trials.jsonl holds")
            continue
        trials = {t.number: t for t in ostudy.get_trials(deepcopy=False)}
        for rec in records:
            n, t = rec.get("optuna_trial"), trials.get(rec.get("optuna_trial"))
            what = f"{method} trial {rec.get('trial')} (Optuna trial {n})"
            if t is None:
                found.append(f"{what} of trials.jsonl is missing from it")
            elif t.params != rec.get("config", {}):
                found.append(f"{what} has parameters {t.params} there and {rec.get('config')} in trials.jsonl")
            elif rec.get("status") == "ok" and t.state == TrialState.COMPLETE and t.value != told_value(rec):
                found.append(f"{what} has value {t.value} there and {told_value(rec)} in trials.jsonl")
            elif rec.get("status") == "ok" and t.state not in (TrialState.COMPLETE, TrialState.RUNNING):
                found.append(f"{what} is {t.state.name} there and ok in trials.jsonl")
    return found


def check(study: Study, study_dir: Path, storage: optuna.storages.BaseStorage | None = None) -> None:
    """Refuse, with one line, to go on with a storage that disagrees with the journal (e.g. before
    confirming, after ``optuna.journal`` was removed under a running study)."""
    storage = storage or open_storage(study.storage, study_dir)
    found = disagreements(study, study_dir, storage)
    if found:
        raise AuditError(f"the Optuna storage {_name(study, study_dir)} disagrees with trials.jsonl: {found[0]}"
                         f"{f' (and {len(found) - 1} more)' if len(found) > 1 else ''}; run `audit resume {study_dir}`, "
                         "which rebuilds the study folder's own Optuna storage from the journal")


def mend(study: Study, study_dir: Path) -> list[str]:
    """On resume, before anything runs: end a torn journal line, and rebuild a damaged study-folder
    storage from the journal (or refuse a shared one). Returns what was done, one line each."""
    done = []
    if folder.repair(study_dir):
        done.append("the journal's last line was torn by a kill; it is ended and skipped")
    if study.storage is None and end_torn_journal(study_dir):
        done.append("the Optuna journal's last line was torn by a kill (a write that never returned); it is cut off")
    torn = folder.torn_lines(study_dir)
    if torn:
        done.append(f"{torn} unreadable line(s) in trials.jsonl are skipped; a search trial they held is run again")
    twice = _journaled_twice(study, study_dir)
    if twice:
        raise AuditError(f"trials.jsonl holds {twice}: the folder mixes the runs of two Optuna storages and is "
                         "no longer one study's record; start the study again under a new --name")
    try:
        found = disagreements(study, study_dir, open_storage(study.storage, study_dir))
    except AuditError as exc:
        if study.storage is not None:
            raise
        found = [str(exc)]
    if found and study.storage is not None:
        raise AuditError(f"the Optuna storage {_name(study, study_dir)} disagrees with this folder's trials.jsonl: "
                         f"{found[0]}{f' (and {len(found) - 1} more)' if len(found) > 1 else ''}; a shared storage is "
                         "not rebuilt (other drivers' trials live there): give the storage this study ran on")
    if found:
        name = own_storage_file(study_dir).name
        kept = _rebuild(study, study_dir)
        done.append(f"{name} disagreed with trials.jsonl ({found[0]}"
                    f"{f'; and {len(found) - 1} more' if len(found) > 1 else ''}); rebuilt from the journal"
                    + (f", the damaged file kept as {kept.name}" if kept else ""))
    if done:
        folder.note_repair(study_dir, {"torn_lines": torn, "rebuilt_storage": bool(found), "notes": done})
    return done


def _journaled_twice(study: Study, study_dir: Path) -> str | None:
    for method in study.all_methods:
        numbers = [r.get("optuna_trial") for r in folder.records(study_dir, method)]
        twice = sorted({n for n in numbers if numbers.count(n) > 1}, key=str)
        if twice:
            return f"{method}'s Optuna trial {twice[0]} {numbers.count(twice[0])} times"
    return None


def lost_trials(study: Study, study_dir: Path) -> list[tuple[str, int, FrozenTrial]]:
    """(method, slot, trial) of this driver's finished Optuna trials that the journal lacks: their
    line was lost. Each is run again on its configuration and seed."""
    storage, me = open_storage(study.storage, study_dir), folder.driver_id(study_dir)
    lost = []
    for method in study.all_methods:
        ostudy = method_study(storage, study.name, method)
        if ostudy is None:
            continue
        trials = ostudy.get_trials(deepcopy=False)
        journaled = {r.get("optuna_trial") for r in folder.records(study_dir, method)}
        for t in trials:
            mine = t.user_attrs.get(DRIVER) == me
            finished = t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and not t.user_attrs.get(CANCELLED))
            if mine and finished and t.number not in journaled:
                lost.append((method, slot_of(trials, t.number), t))
    return lost


def lost_record(record: dict, slot: int, t: FrozenTrial, study_dir: Path) -> dict:
    """The journal record of a re-run lost trial, marked as such (and compared with what Optuna holds)."""
    record.update(phase="search", trial=slot, optuna_trial=t.number, repaired="journal line lost; run again")
    if record.get("status") != "ok":
        record.pop(METRIC, None)
    same = (record.get(METRIC) == t.value) if t.state == TrialState.COMPLETE else record.get("status") != "ok"
    folder.note_repair(study_dir, {"rerun": {"method": record["method"], "trial": slot, "optuna_trial": t.number,
                                             "same_as_storage": same}})
    return record


def _rebuild(study: Study, study_dir: Path) -> Path | None:
    """The folder's own storage made again (an Optuna journal, also where it was an older version's
    ``optuna.db``) from the journal; the damaged file is kept aside."""
    from audit.search.searchers import search_spaces

    kept = None
    path = own_storage_file(study_dir)
    if path.exists():
        kept = study_dir / f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(path, kept)
    if path.name == SQLITE:
        for suffix in ("-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    storage, me, spaces = open_storage(None, study_dir), folder.driver_id(study_dir), search_spaces(study, study_dir)
    for method in study.all_methods:
        records = sorted(folder.records(study_dir, method), key=lambda r: r["optuna_trial"])
        if not records:
            continue
        ostudy = optuna.create_study(study_name=study_name(study.name, method), storage=storage, direction="maximize")
        for rec in records:
            while len(ostudy.get_trials(deepcopy=False)) < rec["optuna_trial"]:  # a trial that did not count
                ostudy.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={CANCELLED: REBUILT, DRIVER: me}))
            ok = rec.get("status") == "ok"
            attrs = {DRIVER: me, REBUILT: True}
            if rec.get("reason") == STALE_REASON:
                attrs[CANCELLED] = "stale (rebuilt)"
            elif not ok:
                attrs["reason"] = str(rec.get("reason"))[:500]
            ostudy.add_trial(optuna.trial.create_trial(
                params=rec.get("config", {}), distributions={k: spaces[method][k] for k in rec.get("config", {})},
                value=told_value(rec) if ok else None, state=TrialState.COMPLETE if ok else TrialState.FAIL,
                user_attrs=attrs,  # no epoch values, as in a live search (the journal keeps the curves)
            ))
    return kept


def _name(study: Study, study_dir: Path) -> str:
    return repr(redact(storage_url(study.storage, study_dir)))
