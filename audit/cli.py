"""The ``audit`` command. Each sub-command lives in ``audit/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (``args -> exit code``)."""
from __future__ import annotations

import argparse
import atexit
import importlib
import os
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


def run() -> None:
    """The ``audit`` console script: ``main``, its exit handlers, then exit without the
    interpreter's teardown of its modules, which took 3.8-4.4 s after the main job's last line
    (torch's, Ray's, matplotlib's objects freed one by one; ~1.2 s for torch alone). Every file a
    command writes is closed (and synced) before ``main`` returns; a traceback exits as usual."""
    code = main()
    atexit._run_exitfuncs()  # Ray's shutdown and logging's flush among them, as a normal exit runs them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
