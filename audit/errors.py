"""The one error type users see: a clear one-line message, exit code 2."""


class AuditError(Exception):
    """Bad input or an unusable state, reported to the user as one line."""


def unknown(kind: str, value: object, allowed: "list[str] | tuple[str, ...]") -> AuditError:
    """An error naming the bad value and every allowed one."""
    return AuditError(f"unknown {kind} {value!r}; allowed: {', '.join(sorted(allowed))}")
