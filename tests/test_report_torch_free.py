"""The report package's own rules, checked without training anything: `audit report` never
imports torch, no method name is spelled out in audit/report/ (the catalogue's constants are),
one computation gives summary.csv and the ranking its numbers, and its imports sit on top."""
from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.report.summary import SUMMARY_COLUMNS, method_table, summarise
from methods.catalogue import BASELINE, CLASSICAL, names

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "audit" / "report"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _torch_modules(code: str) -> tuple[list[str], str]:
    """Run ``code`` in a fresh interpreter; return the torch modules it loaded and its output."""
    code += "\nimport sys\nprint('TORCH', [m for m in sys.modules if m == 'torch' or m.startswith('torch.')])\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("TORCH "))
    return eval(line.removeprefix("TORCH ")), done.stdout  # noqa: S307 - our own printed list


def _synthetic_study(path: Path) -> Path:
    """A finished study folder as an old version wrote it: no spaces.json, no optuna.db, no
    machine.json; six search trials and two confirmation runs per method."""
    path.mkdir()
    (path / "study.toml").write_text(
        'name = "synthetic"\nmethods = ["kd"]\ndataset = "digits"\nteacher = "resnet20"\nstudent = "resnet8"\n'
        'trials = 6\nseeds = [1, 2]\nbackend = "local"\n[recipe]\nepochs = 2\n')
    rng = np.random.default_rng(0)
    records = []
    for m in (BASELINE, CLASSICAL):
        for i in range(6):
            config = {"strength": float(rng.uniform(0, 1))}
            if m == CLASSICAL:
                config |= {"temperature": float(rng.uniform(1, 10)), "alpha": float(rng.uniform(0, 1))}
            records.append({"method": m, "phase": "search", "trial": i, "status": "ok", "config": config,
                            "val_acc_last": 90 - 20 * (config["strength"] - 0.3) ** 2, "epochs": 2, "images": 2000})
        for seed, acc in zip((1, 2), (91.0, 92.5) if m == BASELINE else (93.0, 94.0)):
            records.append({"method": m, "phase": "confirm", "seed": seed, "status": "ok", "config": records[-1]["config"],
                            "test_acc_last": acc, "test_curve": [acc - 1, acc], "epochs": 2, "images": 2000})
    (path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_audit_report_loads_no_torch(tmp_path: Path) -> None:
    study = _synthetic_study(tmp_path / "study")
    loaded, out = _torch_modules(f"from audit.cli import main\nassert main(['report', {str(study)!r}]) == 0")
    assert loaded == [] and "index.html" in out
    # the old folder's search spaces come from the catalogue: importances for both methods
    imp = pd.read_csv(study / "tables" / "importances.csv")
    assert set(imp.method) == {BASELINE, CLASSICAL}
    assert imp.groupby("method").importance.sum().to_numpy() == pytest.approx([1.0, 1.0])
    ranking = pd.read_csv(study / "tables" / "ranking.csv")
    assert ranking.method.tolist() == [CLASSICAL, BASELINE]
    assert ranking[f"vs_{BASELINE}"].tolist() == [93.5 - 91.75, 0.0]
    html = (study / "index.html").read_text()
    assert "no machine.json" in html and "Complete study" in html


def test_machine_facts_without_torch() -> None:
    loaded, out = _torch_modules("import json\nfrom audit.report.machine import machine_facts\n"
                                 "print('FACTS', json.dumps(machine_facts(with_gpu=False)))")
    assert loaded == []
    facts = json.loads(next(x for x in out.splitlines() if x.startswith("FACTS ")).removeprefix("FACTS "))
    assert {"host", "kd-audit", "git_commit", "python", "platform", "cpu", "cores", "gpus", "gpus_from", "packages",
            "recorded"} <= set(facts)
    assert facts["gpus_from"] == "nvidia-smi" and isinstance(facts["gpus"], list)
    assert facts["packages"]["pandas"] == pd.__version__  # read from metadata, without importing torch for its own


def test_no_method_name_in_the_report_package() -> None:
    """Method names come from methods.catalogue (BASELINE, CLASSICAL, REFERENCES), never literals:
    neither a string that is a method's name nor one naming a reference or a method of three or
    more letters as a word ("vs_nokd" included; "kd-audit", the package, is not a method)."""
    words = [n for n in names() if len(n) >= 3 or n in (BASELINE, CLASSICAL)]
    word = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, words)) + r")(?![A-Za-z0-9-])")
    found = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in names() or word.search(node.value):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:60]!r}")
    for path in sorted((PACKAGE / "templates").iterdir()):
        found += [f"{path.relative_to(REPO)}: {m}" for m in word.findall(path.read_text())]
    assert found == []


def _nested_imports(path: Path) -> list[int]:
    """Line numbers of the imports inside functions."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    return [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top]


def test_report_imports_sit_on_top() -> None:
    """A deferred import says why (sizes and cycles of every module: tests/test_layout.py)."""
    for path in MODULES:
        lines = path.read_text().splitlines()
        for lineno in _nested_imports(path):  # a deferred import says why, in a comment just above it
            above = "\n".join(lines[max(0, lineno - 5):lineno - 1])
            assert "Deferred" in above, f"{path.relative_to(REPO)}:{lineno} imports inside a function without saying why"


def test_summary_and_ranking_share_one_computation() -> None:
    results = pd.DataFrame([
        {"method": BASELINE, "phase": "confirm", "status": "ok", "test_acc_last": 90.0, "hp_strength": 0.25},
        {"method": BASELINE, "phase": "confirm", "status": "ok", "test_acc_last": 92.0, "hp_strength": 0.25},
        {"method": CLASSICAL, "phase": "confirm", "status": "ok", "test_acc_last": 93.0, "hp_strength": 0.5},
        {"method": CLASSICAL, "phase": "confirm", "status": "ok", "test_acc_last": 95.0, "hp_strength": 0.5},
        {"method": "other", "phase": "confirm", "status": "ok", "test_acc_last": 94.0, "hp_strength": 8.0},
        {"method": "other", "phase": "search", "status": "ok", "test_acc_last": None, "hp_strength": 0.1},
        {"method": "other", "phase": "search", "status": "failed", "test_acc_last": None, "hp_strength": 0.2},
        {"method": "late", "phase": "search", "status": "ok", "test_acc_last": None, "hp_strength": 0.1},
    ])
    summary = summarise(results, [BASELINE, CLASSICAL])
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert SUMMARY_COLUMNS == ["method", "runs", "test_mean", "test_std", f"vs_{BASELINE}", f"vs_{CLASSICAL}",
                               "search_ok", "search_failed", "best_config"]
    s = summary.set_index("method")
    assert s.index.tolist() == [BASELINE, CLASSICAL, "other", "late"]  # the study's order, then the journal's
    assert s.runs.tolist() == [2, 2, 1, 0]
    assert s.test_mean[BASELINE] == 91.0 and s.test_std[BASELINE] == pytest.approx(math.sqrt(2))
    assert s[f"vs_{BASELINE}"].tolist()[:3] == [0.0, 3.0, 3.0] and s[f"vs_{CLASSICAL}"].tolist()[:3] == [-3.0, 0.0, -0.0]
    assert math.isnan(s.test_std["other"]) and math.isnan(s.test_mean["late"]) and math.isnan(s[f"vs_{BASELINE}"]["late"])
    assert (s.search_ok["other"], s.search_failed["other"]) == (1, 1)
    assert s.best_config.tolist() == ["strength=0.25", "strength=0.5", "strength=8", ""]
    # the ranking section's table: the same numbers from the same runs
    table = method_table({BASELINE: [90.0, 92.0], CLASSICAL: [93.0, 95.0], "other": [94.0]})
    pd.testing.assert_frame_equal(table.reset_index(drop=True), summary.iloc[:3, :6].reset_index(drop=True),
                                  check_dtype=False)
