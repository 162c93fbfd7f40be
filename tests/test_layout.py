"""The layout is the architecture (DESIGN.md, README "Layout"): folders by concern, small modules,
no import cycles, method names only in the catalogue, one source of method names."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("audit", "methods")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports when it is imported (not in functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in known:
                        out.add(sub)
                    elif base in known:
                        out.add(base)

    visit(tree.body)
    return out - {name}


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {m: _top_level_imports(p, m, set(modules)) for m, p in modules.items()}
    # A package's __init__ is imported before its modules: an edge into one's own parent package is not a cycle.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strongconnect(v)
    assert cycles == []


def test_modules_are_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_the_tree_reads_as_the_architecture() -> None:
    for folder in ("audit/commands", "audit/search", "audit/engine", "audit/engine/models", "audit/judge",
                   "audit/report", "audit/report/sections", "methods"):
        assert (ROOT / folder).is_dir(), folder
    for module in ("audit/cli.py", "audit/study.py", "audit/budget.py", "audit/folder.py", "audit/pipeline.py",
                   "methods/catalogue.py", "methods/catalogue.toml"):
        assert (ROOT / module).is_file(), module


def test_no_method_name_in_audit_outside_the_catalogue() -> None:
    from methods.catalogue import names

    method_names = set(names())
    found = []
    for path in (ROOT / "audit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in method_names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []


def test_one_source_of_method_names() -> None:
    """The registry, the catalogue and the claims mapping agree, name by name and alias by alias."""
    from audit.judge.claims import _METHOD_ALIASES
    from methods import get_method, method_names
    from methods.catalogue import cards, key, lookup

    assert method_names() == sorted(cards())
    for name, card in cards().items():
        cls = get_method(name)
        assert cls.name == name and cls.card is card and cls.paper == card.paper
        for spelling in (name, *card.aliases):
            assert lookup(spelling) == name and get_method(spelling) is cls
            assert _METHOD_ALIASES[key(spelling)] == name
    assert set(_METHOD_ALIASES.values()) == set(cards())


NO_TORCH_COMMANDS = [["methods"], ["claims", "--method", "kd"], ["compare", "--claimed", "70", "--runs", "70.1,69.9"]]


def test_commands_that_do_not_train_do_not_import_torch() -> None:
    # One fresh interpreter runs the commands in turn and checks after each, so the first that
    # loads torch (or fails) is the one named; one interpreter start instead of one per command.
    code = ("import sys\nfrom audit.cli import main\n"
            "for command in %r:\n"
            "    code = main(command)\n"
            "    if code != 0 or 'torch' in sys.modules:\n"
            "        sys.exit(f'{command}: exit {code}, torch loaded: {\"torch\" in sys.modules}')\n"
            "print('checked', len(%r))\n" % (NO_TORCH_COMMANDS, NO_TORCH_COMMANDS))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"checked {len(NO_TORCH_COMMANDS)}" in run.stdout
