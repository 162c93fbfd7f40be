"""Pre-registration (issue 12, item 3): the margin and level are written into study.toml when the
study is created, outside its budget; a report made with other values says so beside every
verdict. Checked on synthetic study folders, without training."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_report_torch_free import _synthetic_study

from audit.cli import main
from audit.judge.claims import SOURCE_COLUMNS
from audit.report.write import write_report
from audit.study import Study

CLAIMS = [["p-kd", "Paper A", "KD", "digits", "resnet20", "resnet8", "93.5", "99", "91", "unspecified", "src 1", ""],
          ["p-kd5", "Paper B", "KD", "digits", "resnet20", "resnet8", "94.0", "99", "91", "best_of_5", "src 2", ""],
          ["p-nokd", "Paper C", "baseline", "digits", "resnet20", "resnet8", "91.5", "", "", "last_epoch", "src 3", ""]]


def _claims(tmp: Path) -> Path:
    path = tmp / "claims.csv"
    pd.DataFrame(CLAIMS, columns=list(SOURCE_COLUMNS)).to_csv(path, index=False)
    return path


def _registered_study(tmp: Path, margin: float = 0.4, alpha: float = 0.1) -> Path:
    study = _synthetic_study(tmp / "study")
    toml = study / "study.toml"
    toml.write_text(toml.read_text().replace("[recipe]", f"margin = {margin}\nalpha = {alpha}\n[recipe]"))
    return study


def test_margin_and_alpha_are_part_of_the_study_not_of_its_budget(tmp_path: Path) -> None:
    base = Study(name="s", methods=["kd"])
    other = Study(name="s", methods=["kd"], margin=0.3, alpha=0.01)
    assert base.budget_hash() == other.budget_hash() and "margin" not in base.budget()
    other.write(tmp_path / "study.toml")
    written = tomllib.loads((tmp_path / "study.toml").read_text())
    assert written["margin"] == 0.3 and written["alpha"] == 0.01
    again = Study.read(tmp_path / "study.toml")
    assert (again.margin, again.alpha) == (0.3, 0.01) and again.budget_hash() == base.budget_hash()
    assert (base.margin, base.alpha) == (0.5, 0.05)  # the defaults, written too


@pytest.mark.parametrize("flags,message", [(["--margin", "0"], "margin must be a positive number"),
                                           (["--alpha", "0.5"], "alpha must be between 0 and 0.5")])
def test_run_refuses_bad_statistics_settings_before_making_anything(tmp_path: Path, capsys, flags, message) -> None:
    rc = main(["run", "--method", "kd", "--trials", "1", "--seeds", "2", "--epochs", "1", "--backend", "local",
               "--out", str(tmp_path), "--name", "bad", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_run_flags_reach_study_toml(tmp_path: Path) -> None:
    import argparse

    from audit.commands.run import register, study_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["run", "--method", "kd", "--margin", "0.8", "--alpha", "0.02"])
    study = study_from_args(args)
    assert (study.margin, study.alpha) == (0.8, 0.02)
    path = tmp_path / "file.toml"
    Study(name="f", methods=["kd"], margin=0.7).write(path)
    args = parser.parse_args(["run", str(path), "--alpha", "0.01"])  # a flag over the study file's value
    study = study_from_args(args)
    assert (study.margin, study.alpha) == (0.7, 0.01)


def test_the_report_judges_at_the_preregistered_values_by_default(tmp_path: Path) -> None:
    study = _registered_study(tmp_path)
    html = write_report(study, claims_path=_claims(tmp_path)).read_text()
    table = pd.read_csv(study / "tables" / "verdicts_published.csv")
    assert (table.margin == 0.4).all() and (table.alpha == 0.1).all()
    assert html.count("<td>±0.4 points, alpha 0.1 (pre-registered)</td>") == len(CLAIMS)
    assert "NOT the pre-registered" not in html


def test_a_report_with_other_values_says_so_beside_every_verdict(tmp_path: Path, capsys) -> None:
    study = _registered_study(tmp_path)
    assert main(["report", str(study), "--margin", "0.3", "--claims", str(_claims(tmp_path))]) == 0
    html = (study / "index.html").read_text()
    md = (study / "report.md").read_text()
    beside = "±0.3 points, alpha 0.1: NOT the pre-registered ±0.4, alpha 0.1"
    assert html.count(f"<td>{beside}</td>") == len(CLAIMS) and md.count(f"| {beside} |") == len(CLAIMS)
    # the relative verdicts use the level only, which is the registered one
    assert "alpha 0.1 (pre-registered)" in html
    assert "the study fixed ±0.4 points and alpha 0.1 in study.toml before its runs" in html
    table = pd.read_csv(study / "tables" / "verdicts_published.csv")
    assert (table.margin == 0.3).all() and (table.margin_preregistered == 0.4).all()
    # a level other than the registered one reaches the relative verdicts too
    assert main(["report", str(study), "--alpha", "0.05", "--claims", str(_claims(tmp_path))]) == 0
    html = (study / "index.html").read_text()
    assert "alpha 0.05: NOT the pre-registered alpha 0.1" in html


def test_a_folder_made_before_preregistration_says_so(tmp_path: Path) -> None:
    study = _synthetic_study(tmp_path / "old")
    html = write_report(study, claims_path=_claims(tmp_path)).read_text()
    assert "predates pre-registration" in html
    assert html.count("alpha 0.05 (not pre-registered: the study predates it)</td>") == len(CLAIMS) + 1  # + kd beats nokd
