"""Optuna's storage: one study per method (``<study>.<method>``, seeded TPE). By default the study
folder's own Optuna journal (``optuna.journal``, an append-only file); a shared RDB (PostgreSQL)
for several drivers. Torch-free: the report opens it too.

The folder's own storage is a journal file rather than SQLite because a search trial costs about
20 Optuna writes and reads: through SQLAlchemy on SQLite they took 65 ms of the driver's time per
trial (quiet machine, the main job's spaces), in the journal 17 ms (README, "Measured figures"),
and the driver's time is time the trials wait. A folder written before keeps its ``optuna.db``.
"""
from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from audit.errors import AuditError, io_problem

optuna.logging.set_verbosity(optuna.logging.WARNING)

_SCHEMA_RACE_ATTEMPTS = 6


def redact(url: str) -> str:
    """A storage URL without its password, for anything written or printed."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


JOURNAL = "optuna.journal"  # the study folder's own storage
SQLITE = "optuna.db"  # the folder's own storage as versions before the journal wrote it


def own_storage_file(study_dir: Path) -> Path:
    """The study folder's own storage file: its SQLite file where an older version made one, else its journal."""
    old = study_dir / SQLITE
    return old if old.is_file() else study_dir / JOURNAL


def storage_url(storage: str | None, study_dir: Path) -> str:
    """The study's storage, or the folder's own file when it names none (a path, for messages)."""
    if storage:
        return storage
    own = own_storage_file(study_dir).resolve()
    return f"sqlite:///{own}" if own.name == SQLITE else str(own)


def _with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; use psycopg2 where only that is installed."""
    if url.startswith("postgresql://"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def open_storage(storage: str | None, study_dir: Path) -> optuna.storages.BaseStorage:
    """The study's storage (``storage``, an RDB URL, or the folder's own file), one clear error
    line when it cannot be opened."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    own = own_storage_file(study_dir) if storage is None else None
    if own is not None and own.name == JOURNAL:
        return _open_journal(own.resolve())
    url = storage_url(storage, study_dir)
    for attempt in range(_SCHEMA_RACE_ATTEMPTS):
        try:
            rdb = optuna.storages.RDBStorage(_with_driver(url), heartbeat_interval=None)
            if storage is None:  # the study folder's own file; a given URL (maybe shared, maybe on NFS) keeps SQLite's defaults
                _fast_sqlite(rdb)
            return rdb
        except (IntegrityError, OperationalError, ProgrammingError) as exc:
            # Two drivers creating Optuna's tables in an empty database at the same moment collide
            # (PostgreSQL: duplicate type/relation; SQLite: alembic's version row, or "table ... already
            # exists" when both issued CREATE TABLE); the loser finds
            # the tables made on retry.
            text = str(exc).lower()
            if attempt + 1 < _SCHEMA_RACE_ATTEMPTS and any(w in text for w in ("duplicate", "already exists", "unique constraint", "database is locked")):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise AuditError(_storage_error(url, exc)) from None
        except Exception as exc:  # noqa: BLE001 - any driver error becomes one clear line
            raise AuditError(_storage_error(url, exc)) from None
    raise AssertionError("unreachable")


def _open_journal(path: Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as exc:  # noqa: BLE001 - any error becomes one clear line
        raise AuditError(_storage_error(str(path), exc)) from None


def end_torn_journal(study_dir: Path) -> bool:
    """Cut the folder's Optuna journal back to its last whole line; True when there was a torn one.

    A driver killed while appending leaves a partial last line, which Optuna skips when it reads
    but would join to the next write, spoiling it. The write never returned (each append is
    synced before it does), so nothing that was acknowledged is lost. Call with no driver running.
    """
    path = study_dir / JOURNAL
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False  # the usual case: only the last byte is read
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())
    return True


def _fast_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead log and ``synchronous=NORMAL`` on every connection to a SQLite storage.

    A trial costs about 20 Optuna transactions; in SQLite's default mode each one syncs the disk
    two or three times (README, "Measured figures"). In WAL mode with NORMAL a commit survives the
    process being killed and the file stays consistent; only an operating-system crash or power
    cut can take back the last commits, and the journal (``trials.jsonl``, synced before Optuna is
    told) is the record a resume rebuilds them from (``audit.search.recovery``).
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - SQLAlchemy's signature
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # the connections made while Optuna created its tables take the pragmas too


def _storage_error(url: str, exc: Exception) -> str:
    cause = io_problem(exc) or f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return f"cannot open Optuna storage {redact(url)!r}: {cause}"


def study_name(study: str, method: str) -> str:
    """The Optuna study of one method of a kd-audit study."""
    return f"{study}.{method}"


def method_study(storage: optuna.storages.BaseStorage, study: str, method: str) -> optuna.Study | None:
    """The method's Optuna study, or ``None`` when none was created yet."""
    try:
        return optuna.load_study(study_name=study_name(study, method), storage=storage)
    except KeyError:
        return None


def best_config(storage: optuna.storages.BaseStorage, study: str, method: str) -> dict | None:
    """The best completed trial's parameters (earliest on ties), or ``None`` when none completed."""
    ostudy = method_study(storage, study, method)
    if ostudy is None:
        return None
    complete = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    return dict(max(complete, key=lambda t: (t.value, -t.number)).params)
