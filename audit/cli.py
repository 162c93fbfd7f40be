"""The ``audit`` command. Each sub-command lives in ``audit/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (``args -> exit code``)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from audit.errors import AuditError, io_problem


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        sys.stderr.write(f"audit: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    import audit.commands as commands

    parser = _Parser(prog="audit", description="Reproducibility auditor for knowledge distillation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):  # helpers shared by the commands, not commands
            continue
        importlib.import_module(f"{commands.__name__}.{mod.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except AuditError as exc:
        sys.stderr.write(f"audit: error: {exc}\n")
        return 2
    except Exception as exc:  # a full disk or a read-only folder is one line too, not a traceback
        said = io_problem(exc)
        if said is None:
            raise
        sys.stderr.write(f"audit: error: {said}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("audit: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
