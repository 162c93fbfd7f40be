"""The reproducibility report: a small real study reported as HTML/Markdown/CSV, escaping, an
interrupted study, the expected-max estimator, and the page rendered in headless Chromium."""
from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audit.cli import main
from audit.errors import AuditError
from audit.folder import StudyFolder
from audit.judge.claim import judge_claim
from audit.judge.relative import compare_methods, power_gain
from audit.judge.tuning import expected_max, expected_max_std
from audit.report.importance import importance_table
from audit.report.machine import MACHINE_JSON, machine_facts
from audit.report.sections.matrix import matrix_section
from audit.report.write import write_report

REPO = Path(__file__).resolve().parents[1]

SECTION_TITLES = ["1. Verdicts", "2. Method ranking under the equal budget", "3. Equal-budget curves",
                  "4. Hyper-parameter sensitivity", "5. Cross-architecture matrix", "6. Budget and compute",
                  "7. Provenance"]
# The small study below has 3 trials per method, too few for importances, and one pair: the page
# has the ranking, equal-budget, sensitivity and budget figures.
SMALL_STUDY_FIGURES = 4
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


# The first test pays for the study (and for the teacher unless the session's cache has it),
# which on a busy 2-core machine can exceed the default 600 s.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, teacher_cache: Path) -> Path:
    """A small real study: kd (with nokd) on digits, 3 trials, 2 seeds, 1 epoch; its student is
    resnet8 (a published architecture, which claims can name), not the default resnet8_half."""
    tmp = tmp_path_factory.mktemp("report")
    rc = main(["run", "--method", "kd", "--student", "resnet8", "--trials", "3", "--seeds", "2", "--epochs", "1",
               "--backend", "local",
               "--out", str(tmp), "--name", "s", "--cache-dir", str(teacher_cache)])
    assert rc == 0
    return tmp / "s"


def copy_study(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("index.html", "report.md", "tables", "figures"))
    return dst


# ---------------------------------------------------------------------------------------------
# the expected-max estimator (Dodge et al. 2019)
# ---------------------------------------------------------------------------------------------


def test_expected_max_hand_computed() -> None:
    # Scores 1, 2, 3. Best of 2 draws: P(1) = 1/9, P(2) = 4/9 - 1/9, P(3) = 1 - 4/9,
    # so E = (1*1 + 2*3 + 3*5)/9 = 22/9. Best of 3: (1*1 + 2*7 + 3*19)/27 = 8/3.
    got = expected_max([3.0, 1.0, 2.0])
    np.testing.assert_allclose(got, [2.0, 22 / 9, 8 / 3])
    np.testing.assert_allclose(expected_max([1, 2, 3], 2), [22 / 9])
    # One draw is the mean, with the population spread.
    np.testing.assert_allclose(expected_max_std([1, 2, 3], 1), [np.sqrt(2 / 3)])
    # Ties and the limits: equal scores give that score; many draws tend to the maximum.
    np.testing.assert_allclose(expected_max([5.0, 5.0, 5.0]), [5.0, 5.0, 5.0])
    assert expected_max([1, 2, 3], 200)[0] == pytest.approx(3.0, abs=1e-9)


def test_expected_max_matches_enumeration() -> None:
    values = [70.0, 72.5, 72.5, 75.0, 71.0]
    for n in (1, 2, 3):
        draws = list(itertools.product(values, repeat=n))
        best = np.array([max(d) for d in draws])
        assert expected_max(values, n)[0] == pytest.approx(best.mean())
        assert expected_max_std(values, n)[0] == pytest.approx(best.std())
    curve = expected_max(values)
    assert np.all(np.diff(curve) >= 0)  # more trials never lower the expected best


def test_expected_max_rejects_bad_input() -> None:
    with pytest.raises(AuditError):
        expected_max([])
    with pytest.raises(AuditError):
        expected_max([1.0, float("nan")])
    with pytest.raises(AuditError):
        expected_max([1.0, 2.0], 0)


# ---------------------------------------------------------------------------------------------
# parts that need more trials or pairs than the small study has (no training)
# ---------------------------------------------------------------------------------------------


def _folder(tmp: Path, records: list[dict], **spec) -> StudyFolder:
    base = {"name": "synthetic", "methods": ["kd"], "dataset": "digits", "teacher": "resnet20", "student": "resnet8",
            "trials": 10, "seeds": [1, 2]}
    return StudyFolder(tmp, "", {**base, **spec}, records, None, None)


def test_every_method_of_a_large_study_gets_its_own_style() -> None:
    from audit.report import figures
    from methods import method_names

    methods = method_names()  # the every-method study: 26 methods, references included
    colour, marker = figures.colours(methods), figures.markers(methods)
    styles = {(colour[m], marker[m]) for m in methods}
    assert len(styles) == len(methods)
    # The references keep their colours, which no other method shares.
    assert colour["nokd"] == figures.REFERENCE_COLOURS["nokd"] and colour["kd"] == figures.REFERENCE_COLOURS["kd"]
    assert list(colour.values()).count(colour["kd"]) == list(colour.values()).count(colour["nokd"]) == 1
    curves = {m: (np.linspace(50 + i, 99 - i / 10, 6), np.full(6, 2.0)) for i, m in enumerate(methods)}
    fig = figures.expected_max_curves(curves, colour)
    low, high = fig.axes[1].get_ylim()  # the zoomed panel frames where the curves end
    assert low > 95 and high <= 100.05


def test_importances_from_the_journal(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        t, a, s = rng.uniform(1, 10), rng.uniform(0, 1), rng.uniform(0, 1)
        records.append({"method": "kd", "phase": "search", "trial": i, "status": "ok",
                        "config": {"temperature": t, "alpha": a, "strength": s}, "val_acc_last": 90 - 5 * (s - 0.3) ** 2 * 10})
    folder = _folder(tmp_path, records)
    imp, why, ostudy = importance_table(folder, "kd")
    assert why == "" and imp is not None
    assert set(imp) == {"temperature", "alpha", "strength"}
    assert max(imp, key=imp.get) == "strength"  # the only one the score depends on
    assert sum(imp.values()) == pytest.approx(1.0)
    from audit.report import figures

    png = figures.to_png(figures.importances(ostudy, None, "kd"))
    assert png.startswith(b"\x89PNG")
    few, why, _ = importance_table(_folder(tmp_path, records[:3]), "kd")
    assert few is None and "at least" in why


def test_cross_architecture_matrix_with_several_pairs(tmp_path: Path) -> None:
    records = [{"method": m, "phase": "confirm", "status": "ok", "seed": s, "teacher": t, "student": "resnet8",
                "test_acc_last": base + (1.0 if m == "kd" else 0.0) + s / 10}
               for t, base in (("resnet20", 90.0), ("resnet32", 91.0)) for m in ("nokd", "kd") for s in (1, 2)]
    sec = matrix_section(_folder(tmp_path, records))
    kinds = [b.kind for b in sec.blocks]
    assert kinds == ["table", "figure"]
    table = sec.blocks[0].table
    assert table.columns == ["method", "resnet20 → resnet8", "resnet32 → resnet8"]
    assert table.rows == [["kd", "+1.00", "+1.00"]]
    one = matrix_section(_folder(tmp_path, records[:4]))
    assert [b.kind for b in one.blocks] == ["p"] and "one teacher → student pair" in one.blocks[0].text


# ---------------------------------------------------------------------------------------------
# the report of a small real study
# ---------------------------------------------------------------------------------------------


def test_report_files_and_sections(study: Path) -> None:
    index = write_report(study)
    assert index == study / "index.html"
    html = index.read_text()
    md = (study / "report.md").read_text()
    # sections in the order, in both formats
    positions = [html.index(f"<h2>{t}</h2>") for t in SECTION_TITLES]
    assert positions == sorted(positions)
    md_positions = [md.index(f"## {t}") for t in SECTION_TITLES]
    assert md_positions == sorted(md_positions)
    # self-contained: no external references at all
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html
    assert html.count("data:image/png;base64,") == SMALL_STUDY_FIGURES
    # the verdict table: kd against nokd, judged with BH-adjusted p-values
    assert 'class="verdict-table"' in html
    assert "kd beats nokd" in html and "kd beats nokd" in md
    assert "Benjamini-Hochberg" in html
    # tables as CSV, with the same rows
    tables = {p.name for p in (study / "tables").glob("*.csv")}
    assert {"verdicts_relative.csv", "ranking.csv", "equal_budget.csv", "sensitivity.csv", "budget.csv",
            "progress.csv", "importances.csv"} <= tables
    import pandas as pd

    ranking = pd.read_csv(study / "tables" / "ranking.csv")
    assert set(ranking.method) == {"nokd", "kd"} and (ranking.runs == 2).all()
    curve = pd.read_csv(study / "tables" / "equal_budget.csv")
    assert sorted(curve[curve.method == "kd"].n) == [1, 2, 3]
    # the ranking and summary.csv are one computation: the same numbers, best mean first
    summary = pd.read_csv(study / "summary.csv").set_index("method")
    assert ranking["rank"].tolist() == [1, 2] and ranking["mean"].is_monotonic_decreasing
    for _, row in ranking.iterrows():
        s = summary.loc[row.method]
        assert row.runs == s.runs
        assert [row["mean"], row["std"], row.vs_nokd, row.vs_kd] == pytest.approx([s.test_mean, s.test_std, s.vs_nokd, s.vs_kd],
                                                                                  rel=1e-12, abs=1e-12)
    assert ranking.set_index("method").loc["nokd", "vs_nokd"] == 0.0
    rel = pd.read_csv(study / "tables" / "verdicts_relative.csv")
    assert rel.claim.tolist() == ["kd beats nokd"]
    # the verdict is compare_methods' on the confirmation runs, decided on the adjusted p-value
    confirm = [json.loads(line) for line in (study / "trials.jsonl").read_text().splitlines()]
    acc = {m: [r["test_acc_last"] for r in sorted(confirm, key=lambda r: r["seed"])
               if r["phase"] == "confirm" and r["method"] == m and r["status"] == "ok"] for m in ("nokd", "kd")}
    expected = compare_methods(acc["kd"], acc["nokd"])
    got = rel.iloc[0]
    assert got.gain == pytest.approx(expected.gain) and got.p_welch_one_sided == pytest.approx(expected.p_greater)
    assert got.p_adjusted >= got.p_welch_one_sided
    assert got.verdict == ("SUPPORTED" if got.p_adjusted < 0.05 else "CONTRADICTED" if expected.gain_ci_high < 0
                           else "INCONCLUSIVE")
    assert len(list((study / "figures").glob("*.png"))) == SMALL_STUDY_FIGURES
    # the design's power, from the spread these runs measured (pooled over both methods, 2 runs each)
    sd = float(np.sqrt((np.var(acc["kd"], ddof=1) + np.var(acc["nokd"], ddof=1)) / 2))
    power = power_gain(1.0, 2, sd, alpha=0.05, tests=1)
    assert f"pooled standard deviation {sd:.2f} points" in md and f"SUPPORTED with probability {power:.2f}" in md
    assert power < 0.8 and "Below 0.8" in md  # two runs of each cannot decide a 1-point gain
    # provenance: the data checksum and the teacher's checksum from teacher.json
    teacher = json.loads((study / "teacher.json").read_text())
    assert teacher["ident"]["data_sha256"] in html and teacher["sha256"] in html
    assert "Complete study" in html
    # the machine that ran the study, as the pipeline recorded it when the study started
    machine = json.loads((study / MACHINE_JSON).read_text())
    assert "The machine that ran the study" in html and f"no {MACHINE_JSON}" not in html
    assert machine["host"] in html and machine["cpu"] in html


def test_published_claims_are_judged(study: Path, tmp_path: Path) -> None:
    import pandas as pd

    from audit.judge.claims import SOURCE_COLUMNS

    claims = tmp_path / "claims.csv"
    rows = [
        # a claim far above anything one epoch reaches, selected on the test set, with a baseline
        ["t-kd", "Paper <b>A</b>", "KD", "digits", "resnet20", "resnet8", "99.9", "99.5", "97.9", "best_epoch_test",
         "src <i>1</i>", "mean of 5 runs ± 0.1"],
        ["t-nokd", "Paper B", "baseline", "digits", "resnet20", "resnet8", "10.0", "", "", "last_epoch", "src 2", ""],
        ["t-other", "Paper C", "KD", "cifar100", "resnet56", "resnet20", "70.66", "", "", "last_epoch", "src 3", ""],
    ]
    pd.DataFrame(rows, columns=list(SOURCE_COLUMNS)).to_csv(claims, index=False)
    copy = copy_study(study, tmp_path / "claims_study")
    # One-epoch runs have one-point curves; give kd's confirmation runs an earlier, better epoch
    # so the best-epoch rule has something to pick.
    curves = [json.loads(line) for line in (copy / "trials.jsonl").read_text().splitlines()]
    for r in curves:
        if r["phase"] == "confirm" and r["method"] == "kd":
            r["test_curve"] = [99.0 - r["seed"] / 10, *r["test_curve"]]
    (copy / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curves))
    html = write_report(copy, claims_path=claims).read_text()
    table = pd.read_csv(copy / "tables" / "verdicts_published.csv")
    assert table.claim_id.tolist() == ["t-nokd", "t-kd"]  # matched by pair and data set, references first
    nokd, kd = table.iloc[0], table.iloc[1]
    assert nokd.rule == "last_epoch" and kd.rule == "best_epoch_test"
    # last epoch: the verdict is judge_claim's on the last-epoch test accuracies, then adjusted
    # for the report's three tests (with two runs, one degree of freedom, it may not survive)
    last = [r["test_acc_last"] for r in curves if r["phase"] == "confirm" and r["method"] == "nokd"]
    expected = judge_claim(10.0, last)  # a single run (no number of runs stated) with our seed spread
    assert nokd.n_last == 2 and nokd.mean_last == pytest.approx(np.mean(last)) and pd.isna(nokd.mean_best)
    assert nokd.diff_last == pytest.approx(nokd.mean_last - 10.0) and nokd.model == expected.model
    assert nokd.verdict_unadjusted == expected.verdict and nokd.p_adjusted >= nokd.p
    assert nokd.verdict == (expected.verdict if nokd.p_adjusted < 0.05 else "INCONCLUSIVE")
    # best epoch on test: each run's best epoch, the one the paper's rule would have picked
    assert kd.mean_best == pytest.approx(np.mean([98.9, 98.8])) and pd.isna(kd.mean_last)
    assert kd.claimed_std == pytest.approx(0.1) and "the mean of 5 runs" in kd.model
    # beside every verdict: the margin it was judged at, fixed in study.toml before the runs
    assert (table.margin == 0.5).all() and (table.margin_preregistered == 0.5).all()
    assert html.count("±0.5 points, alpha 0.05 (pre-registered)") == 3  # the two claims' rows, the provenance's line
    # the claimed gain over nokd (99.9 - 97.9) sits next to the measured one
    rel = pd.read_csv(copy / "tables" / "verdicts_relative.csv")
    assert rel.claimed_gain.iloc[0] == pytest.approx(2.0)
    assert "Paper &lt;b&gt;A&lt;/b&gt;" in html and "<b>A</b>" not in html


def test_cli_report(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = copy_study(study, tmp_path / "copy")
    assert main(["report", str(copy), "--correction", "holm"]) == 0
    assert "index.html" in capsys.readouterr().out
    assert "Holm" in (copy / "index.html").read_text()
    # a folder that is not a study, and one that does not exist: one line each, exit 2
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        assert main(["report", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "study folder" in err
    assert main(["report", str(copy), "--alpha", "0.7"]) == 2
    assert "alpha" in capsys.readouterr().err


def test_names_cannot_inject_markup(study: Path, tmp_path: Path) -> None:
    copy = copy_study(study, tmp_path / "evil")
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    toml = (copy / "study.toml").read_text()
    (copy / "study.toml").write_text(toml.replace('name = "s"', f"name = {json.dumps('s' + evil)}"))
    lines = []
    for line in (copy / "trials.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["method"] == "kd":
            rec["method"] = "kd" + evil
            rec["config"]["temperature"] = evil  # a hyper-parameter value that is text
        lines.append(json.dumps(rec))
    (copy / "trials.jsonl").write_text("\n".join(lines) + "\n")
    html = write_report(copy).read_text()
    md = (copy / "report.md").read_text()
    # report.md quotes study.toml verbatim inside a code fence, where markup is shown, not run
    fences = re.findall(r"^(~{4,})toml\n.*?^\1$", md, flags=re.S | re.M)
    assert len(fences) == 1
    md_prose = re.sub(r"^(~{4,})toml\n.*?^\1$", "", md, flags=re.S | re.M)
    for text in (html, md_prose):
        assert "<script" not in text and "<img src=x" not in text
    assert "&lt;script&gt;" in html and "&lt;script&gt;" in md
    assert html.count("<img ") == html.count('<img src="data:image/png;base64,')


def test_interrupted_study_says_how_far_it_got(study: Path, tmp_path: Path) -> None:
    copy = copy_study(study, tmp_path / "cut")
    lines = (copy / "trials.jsonl").read_text().splitlines()
    # four search trials survive, plus half of the next line (a kill mid-write)
    kept = [json.loads(line) for line in lines[:4]]
    assert all(r["phase"] == "search" for r in kept)
    (copy / "trials.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][: len(lines[4]) // 2])
    for stale in ("results.csv", "summary.csv", "curves.csv"):
        (copy / stale).unlink(missing_ok=True)
    html = write_report(copy).read_text()
    assert "This study is incomplete" in html and "Incomplete study" in html
    for method in ("nokd", "kd"):
        done = sum(r["method"] == method for r in kept)
        state = "searching" if done < 3 else "confirming"
        assert f"{method} {done}/3 search trials, 0/2 confirmation runs ({state})" in html
    assert "No confirmation run has finished yet" in html
    assert "PENDING" in html
    md = (copy / "report.md").read_text()
    assert "This study is incomplete" in md
    # a study folder holding nothing but its study.toml still renders
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(copy / "study.toml", bare / "study.toml")
    assert "0/3 search trials" in write_report(bare).read_text()


def test_report_runs_without_torch(study: Path, tmp_path: Path) -> None:
    """`audit report` in a fresh interpreter never imports torch; the machine that ran the study
    (machine.json, recorded without torch too) is shown beside the one that wrote the report."""
    copy = copy_study(study, tmp_path / "no_torch")
    code = ("import json, sys\n"
            "from audit.cli import main\n"
            "from audit.report.machine import machine_facts\n"
            f"json.dump(machine_facts(with_gpu=False), open({str(copy / MACHINE_JSON)!r}, 'w'))\n"
            f"assert main(['report', {str(copy)!r}]) == 0\n"
            "print('torch loaded:', sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "torch loaded: []" in done.stdout
    facts = json.loads((copy / MACHINE_JSON).read_text())
    assert facts == {**facts, **{k: v for k, v in machine_facts(with_gpu=False).items() if k in ("host", "cpu", "cores")}}
    html = (copy / "index.html").read_text()
    assert "The machine that ran the study" in html and f"no {MACHINE_JSON}" not in html
    assert f"{facts['cpu']}, {facts['cores']} logical cores" in html and facts["recorded"] in html


# ---------------------------------------------------------------------------------------------
# the page in a real browser
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_page_renders_in_headless_chromium(study: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium package is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    index = write_report(study)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(index.as_uri(), wait_until="load")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            page.screenshot(path=str(tmp_path / "report_top.png"))
            verdicts = page.locator("table.verdict-table").first
            assert verdicts.is_visible()
            assert "kd beats nokd" in verdicts.inner_text()
            assert len(page.inner_text("body")) > 2000  # not a blank page
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            figures = page.locator("figure.report-figure img").count()
            titles = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
        finally:
            browser.close()
    assert errors == []
    assert figures == SMALL_STUDY_FIGURES and len(images) == SMALL_STUDY_FIGURES
    assert all(ok and w > 0 and h > 0 for ok, w, h in images), images
    assert titles == SECTION_TITLES
    # the screenshot itself is not blank: many distinct colours, not one background
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] > 2000 and pixels.std() > 10
