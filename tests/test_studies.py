"""Declared studies parse into valid, fully resolved studies."""
from pathlib import Path

import pytest

from audit.errors import AuditError
from audit.study import Study
from methods import method_names

STUDIES = sorted(Path(__file__).parent.parent.joinpath("studies").rglob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_declared_study_is_valid(path):
    study = Study.read(path)
    assert study.trials >= 1 and study.seeds
    assert set(study.methods) <= set(method_names())


def test_digits_study_has_every_method():
    study = Study.read(Path(__file__).parent.parent / "studies" / "digits_all_methods.toml")
    assert sorted(study.methods) == method_names()


def test_unknown_key_is_refused(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('name = "x"\nmethods = ["kd"]\nepochs = 3\n')
    with pytest.raises(AuditError, match="unknown study keys \\['epochs'\\]"):
        Study.read(f)


def test_round_trip(tmp_path):
    s = Study(name="rt", methods=["kd", "fitnet"], trials=3, seeds=[4, 5])
    s.write(tmp_path / "study.toml")
    back = Study.read(tmp_path / "study.toml")
    assert back.budget_hash() == s.budget_hash() and back.methods == ["kd", "feature_kd"]
