"""``audit aggregate`` (issue 12, item 5): one verdict per method across several study folders,
rliable's aggregate metrics and figures, refusal of unequal budgets, and the report in a real
browser. Study folders are synthetic (written as the pipeline writes them, without training);
the every-method studies of ``studies/`` are used with their own study.toml."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.cli import main
from audit.judge.across import judge_across
from audit.judge.aggregate import Pair, gain_iqm, improvement
from methods.catalogue import BASELINE, CLASSICAL

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FIGURES = 4  # IQM intervals, probability of improvement, performance profiles, matrix


def _folder(path: Path, study: dict, means: dict[str, float], *, sd: float = 0.3, seed: int = 0,
            teacher_acc: float | None = 99.0) -> Path:
    """A finished study folder: study.toml as written, n confirmation runs per method around ``means``."""
    import tomli_w

    path.mkdir(parents=True)
    (path / "study.toml").write_text(tomli_w.dumps(study))
    rng = np.random.default_rng(seed)
    records = []
    for m, mean in means.items():
        for s in study["seeds"]:
            acc = float(mean + rng.normal(0, sd))
            records.append({"method": m, "phase": "confirm", "seed": s, "status": "ok", "test_acc_last": acc,
                            "test_curve": [acc - 1.0, acc], "config": {}})
    (path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if teacher_acc is not None:
        (path / "teacher.json").write_text(json.dumps({"test_acc": teacher_acc}))
    return path


def _study(name: str, teacher: str, **over) -> dict:
    base = {"name": name, "methods": ["kd", "good", "local"], "dataset": "digits", "teacher": teacher,
            "student": "resnet8", "trials": 4, "seeds": [1, 2, 3, 4, 5], "backend": "local", "margin": 0.5,
            "alpha": 0.05, "recipe": {"epochs": 2}}
    return base | over


def _two_tasks(tmp: Path) -> tuple[Path, Path]:
    # "good" gains 1.5 points on both pairs; "local" gains 1.5 on the first and loses 0.5 on the second:
    # the seed survey's finding for feature distillation
    a = _folder(tmp / "a", _study("a", "resnet20"), {BASELINE: 95.0, CLASSICAL: 96.0, "good": 96.5, "local": 96.5}, seed=1)
    b = _folder(tmp / "b", _study("b", "wrn_16_2"), {BASELINE: 95.0, CLASSICAL: 96.0, "good": 96.5, "local": 94.5}, seed=2)
    return a, b


def test_one_verdict_per_method_across_tasks(tmp_path: Path, capsys) -> None:
    a, b = _two_tasks(tmp_path)
    out = tmp_path / "agg"
    assert main(["aggregate", str(a), str(b), "--out", str(out)]) == 0
    assert "index.html" in capsys.readouterr().out
    table = pd.read_csv(out / "tables" / "verdicts_across.csv").set_index("method")
    assert table.loc["good", f"verdict_{BASELINE}"] == "GENERALISES"
    assert table.loc["local", f"verdict_{BASELINE}"] == "NOT ON EVERY TASK"
    assert table.loc[CLASSICAL, f"verdict_{BASELINE}"] == "GENERALISES"
    assert BASELINE not in table.index and (table.tasks == 2).all()
    assert table.loc["good", f"iqm_{BASELINE}_low"] > 0.5 and table.loc["good", f"poi_{BASELINE}_low"] > 0.5
    matrix = pd.read_csv(out / "tables" / "cross_architecture.csv").set_index("method")
    assert list(matrix.columns) == ["digits: resnet20 → resnet8", "digits: wrn_16_2 → resnet8"]
    assert matrix.loc["local"].iloc[0] > 1.0 and matrix.loc["local"].iloc[1] < 0
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == FIGURES and len(list((out / "figures").glob("*.png"))) == FIGURES
    assert "Aggregate of 2 study folders" in html and "pre-registered by every folder" in html
    md = (out / "report.md").read_text()
    assert "## 1. Verdicts across tasks" in md and "## 4. Cross-architecture matrix" in md


def test_unequal_budgets_are_refused_unless_told(tmp_path: Path, capsys) -> None:
    a = _folder(tmp_path / "a", _study("a", "resnet20"), {BASELINE: 95.0, CLASSICAL: 96.0})
    b = _folder(tmp_path / "b", _study("b", "wrn_16_2", trials=8, seeds=[1, 2, 3]), {BASELINE: 95.0, CLASSICAL: 96.0})
    out = tmp_path / "agg"
    assert main(["aggregate", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different budgets" in err and "trials: a 4, b 8" in err
    assert "--allow-unequal-budgets" in err and not out.exists()  # nothing half-written
    assert main(["aggregate", str(a), str(b), "--out", str(out), "--allow-unequal-budgets"]) == 0
    html = (out / "index.html").read_text()
    assert "UNEQUAL BUDGETS" in html and "aggregated anyway, as asked" in html


@pytest.mark.parametrize("args,message", [
    (["only"], "at least two study folders"),
    (["a", "a"], "given more than once"),
    (["a", "missing"], "is not a folder"),
    (["a", "b", "--out", "a"], "is a study folder"),
    (["a", "b", "--alpha", "0.7"], "alpha must be between 0 and 0.5"),
    (["a", "b", "--margin", "-1"], "margin must be a positive number"),
    (["a", "b", "--normalise", "teacher"], "teacher"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    _folder(tmp_path / "a", _study("a", "resnet20"), {BASELINE: 95.0, CLASSICAL: 96.0})
    # a teacher barely above the baseline: scores over their gap would be unstable
    _folder(tmp_path / "b", _study("b", "wrn_16_2"), {BASELINE: 95.0, CLASSICAL: 96.0}, teacher_acc=95.2)
    full = [str(tmp_path / x) if x in ("a", "b", "only", "missing") else x for x in args]
    if "--out" not in args:
        full += ["--out", str(tmp_path / "agg")]
    assert main(["aggregate", *full]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "agg").exists()


def test_the_every_method_studies_aggregate(tmp_path: Path) -> None:
    """The two every-method digits studies, as their study files declare them (26 methods, two pairs,
    one budget), with synthetic runs: aggregated as they are; refused once one folder's budget differs,
    aggregated when told."""
    dirs = []
    for i, name in enumerate(("digits_all_methods", "digits_all_methods_cross_arch")):
        study = tomllib.loads((REPO / "studies" / f"{name}.toml").read_text())
        means = {m: 98.0 + 0.1 * j for j, m in enumerate([BASELINE, CLASSICAL, *study["methods"]])}
        dirs.append(_folder(tmp_path / name, study, means, seed=i))
    out = tmp_path / "agg"
    assert main(["aggregate", *map(str, dirs), "--out", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "verdicts_across.csv")
    assert len(table) == 25
    study = tomllib.loads((REPO / "studies" / "digits_all_methods_cross_arch.toml").read_text())
    study["trials"] = 4  # another budget
    means = {m: 98.0 + 0.1 * j for j, m in enumerate([BASELINE, CLASSICAL, *study["methods"]])}
    dirs[1] = _folder(tmp_path / "fewer_trials", study, means, seed=1)
    assert main(["aggregate", *map(str, dirs), "--out", str(tmp_path / "agg2")]) == 2
    assert main(["aggregate", *map(str, dirs), "--out", str(tmp_path / "agg2"), "--allow-unequal-budgets"]) == 0
    table = pd.read_csv(tmp_path / "agg2" / "tables" / "verdicts_across.csv")
    assert len(table) == 25 and set(table[f"verdict_{BASELINE}"]) <= {"GENERALISES", "NOT ON EVERY TASK", "INCONCLUSIVE"}
    assert (tmp_path / "agg2" / "figures" / "performance_profiles.png").stat().st_size > 10_000


def test_aggregate_loads_no_torch(tmp_path: Path) -> None:
    a, b = _two_tasks(tmp_path)
    code = (f"import sys\nfrom audit.cli import main\nassert main(['aggregate', {str(a)!r}, {str(b)!r}, '--out', "
            f"{str(tmp_path / 'agg')!r}]) == 0\nprint('TORCH', [m for m in sys.modules if m.split('.')[0] == 'torch'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TORCH []" in done.stdout


# ---------------------------------------------------------------------------------------------
# the statistics, by simulation
# ---------------------------------------------------------------------------------------------


def _pairs(rng: np.random.Generator, gains: list[float], n: int, sd: float = 1.0) -> dict[str, Pair]:
    return {f"t{i}": Pair(rng.normal(g, sd, n), rng.normal(0.0, sd, n)) for i, g in enumerate(gains)}


def test_generalises_holds_its_level_when_one_task_has_no_gain() -> None:
    """The least favourable case of the intersection-union test: no gain on one task, a large one on
    the other; GENERALISES must fire at most alpha. And NOT ON EVERY TASK at most alpha when every
    task gains exactly the margin."""
    rng = np.random.default_rng(3)
    sims, alpha = 1200, 0.05
    gen = [judge_across(_pairs(rng, [0.0, 5.0], 5), margin=0.5).p_generalises < alpha for _ in range(sims)]
    short = [judge_across(_pairs(rng, [0.5, 0.5], 5), margin=0.5).p_short < alpha for _ in range(sims)]
    se = math.sqrt(alpha * (1 - alpha) / sims)
    assert np.mean(gen) <= alpha + 3 * se and np.mean(short) <= alpha + 3 * se


@pytest.mark.parametrize("tasks,n", [(2, 3), (3, 3), (2, 5), (6, 3)])
def test_iqm_interval_covers_from_three_runs(tasks: int, n: int) -> None:
    """The stratified bootstrap of the IQM of gains with Hesterberg's expanded percentiles: from 3
    runs of each on every task it covers the true IQM gain within 2 points of its nominal 95 %
    (rliable's plain percentiles: 0.84-0.90 at 3 runs)."""
    rng = np.random.default_rng(tasks * 10 + n)
    truth, sims = 1.0, 400  # the same normal gain on every task: the IQM of the gains tends to 1
    hits = 0
    for i in range(sims):
        _, lo, hi = gain_iqm(_pairs(rng, [truth] * tasks, n), n_boot=1000, seed=i)
        hits += lo <= truth <= hi
    assert hits / sims >= 0.93 - 2 * math.sqrt(0.95 * 0.05 / sims)
    assert math.isnan(gain_iqm(_pairs(rng, [truth] * tasks, 2))[1])  # no interval below 3 runs


def test_probability_of_improvement_over_tasks_is_the_average_of_the_tasks() -> None:
    pairs = {"a": Pair(np.array([2.0, 3.0, 4.0]), np.array([1.0, 2.5, 5.0])), "b": Pair(np.array([1.0, 1.0]), np.array([1.0, 0.0]))}
    point, lo, hi = improvement(pairs)
    # a: 2 > 1, 3 > 1 & 2.5, 4 > 1 & 2.5 -> 5 of 9; b: 1 = 1 twice (halves), 1 > 0 twice -> 3 of 4
    assert point == pytest.approx((5 / 9 + 3 / 4) / 2) and lo < point < hi
    assert math.isnan(improvement({"a": Pair(np.array([2.0]), np.array([1.0, 2.0]))})[1])  # one run: no interval


@pytest.mark.slow
def test_aggregate_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium package is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    a, b = _two_tasks(tmp_path)
    out = tmp_path / "agg"
    assert main(["aggregate", str(a), str(b), "--out", str(out)]) == 0
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto((out / "index.html").as_uri(), wait_until="load")
            shot = tmp_path / "aggregate.png"
            page.screenshot(path=str(shot), full_page=True)
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            titles = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
            verdicts = page.locator("table.verdict-table").first.inner_text()
        finally:
            browser.close()
    assert errors == []
    assert len(images) == FIGURES and all(ok and w > 0 and h > 0 for ok, w, h in images), images
    assert titles == ["1. Verdicts across tasks", "2. Aggregate metrics", "3. Performance profiles",
                      "4. Cross-architecture matrix", "5. Study folders and budgets"]
    assert "GENERALISES" in verdicts and "NOT ON EVERY TASK" in verdicts
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] > 1500 and pixels.std() > 10


def test_the_per_task_tests_are_welchs() -> None:
    from scipy import stats

    rng = np.random.default_rng(6)
    a, b = rng.normal(1, 0.5, 4), rng.normal(0, 0.3, 6)
    got = judge_across({"t": Pair(a, b)}, margin=0.5).tasks["t"]
    assert got.p_better == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    assert got.p_short == pytest.approx(stats.ttest_ind(a - 0.5, b, equal_var=False, alternative="less").pvalue)
