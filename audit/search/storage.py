"""Optuna's storage: one study per method (``<study>.<method>``, seeded TPE) in an RDB, SQLite in
the study folder by default or a shared PostgreSQL for several drivers. Torch-free: the report
opens it too.
"""
from __future__ import annotations

import importlib.util
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


def storage_url(storage: str | None, study_dir: Path) -> str:
    """The study's storage, or the SQLite file in its folder when it names none."""
    return storage or f"sqlite:///{(study_dir / 'optuna.db').resolve()}"


def _with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; use psycopg2 where only that is installed."""
    if url.startswith("postgresql://"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def open_storage(storage: str | None, study_dir: Path) -> optuna.storages.BaseStorage:
    """The RDB storage, one clear error line when it cannot be opened."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

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
