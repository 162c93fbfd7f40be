"""The one error type users see: a clear one-line message, exit code 2; and the one line said for
a file-system or storage failure (a full disk, a read-only folder) wherever it happens."""
from __future__ import annotations

import errno


class AuditError(Exception):
    """Bad input or an unusable state, reported to the user as one line."""


def unknown(kind: str, value: object, allowed: "list[str] | tuple[str, ...]") -> AuditError:
    """An error naming the bad value and every allowed one."""
    return AuditError(f"unknown {kind} {value!r}; allowed: {', '.join(sorted(allowed))}")


_FILE_SYSTEM = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up", errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied", errno.EPERM: "operation not permitted", errno.EFBIG: "the file is too large",
    errno.EIO: "an input/output error",
}
_STORAGE = {  # what SQLite (through SQLAlchemy and Optuna) says, by the words of its message
    "database or disk is full": "the disk is full (writing the Optuna storage)",
    "readonly database": "the Optuna storage is read-only",
    "disk i/o error": "an input/output error (in the Optuna storage)",
    "unable to open database file": "the Optuna storage's file cannot be opened",
}


def io_problem(exc: BaseException) -> str | None:
    """One line for a file-system or storage failure found in ``exc`` or what caused it (naming the
    path where known); ``None`` for anything else, which stays a bug to see in full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FILE_SYSTEM:
            where = f" writing {str(exc.filename)!r}" if exc.filename else ""
            return f"{_FILE_SYSTEM[exc.errno]}{where} ({exc.strerror})"
        text = str(exc).lower()
        for words, said in _STORAGE.items():
            if words in text:
                return said
        exc = exc.__cause__ or exc.__context__
    return None
