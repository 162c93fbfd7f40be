"""Declared studies parse into valid, fully resolved studies."""
from pathlib import Path

import pytest

from audit.errors import AuditError
from audit.study import Study
from methods import method_names

# studies/presets/ holds `audit reproduce`'s protocol presets and studies/reproduce/ its study files,
# not studies (tests/test_presets.py, tests/test_reproduce.py).
STUDIES = sorted(p for p in Path(__file__).parent.parent.joinpath("studies").rglob("*.toml")
                 if not {"presets", "reproduce"} & set(p.parts))


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


def test_speed_settings_are_stored_but_not_budget(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('name = "x"\nmethods = ["kd"]\n\n[accel]\nchannels_last = false\nbf16 = true\n')
    s = Study.read(f)
    assert not s.accel.channels_last and s.accel.bf16 and s.accel.teacher_cache
    assert s.budget_hash() == Study(name="x", methods=["kd"]).budget_hash()
    s.write(tmp_path / "study.toml")
    assert Study.read(tmp_path / "study.toml").accel == s.accel
    f.write_text('name = "x"\nmethods = ["kd"]\n\n[accel]\nfp8 = true\n')
    with pytest.raises(AuditError, match=r"unknown \[accel\] keys \['fp8'\]; allowed: channels_last, bf16"):
        Study.read(f)


def test_speed_flags_override_the_study_file(tmp_path):
    import argparse

    from audit.commands.run import register, study_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    f = tmp_path / "s.toml"
    f.write_text('name = "x"\nmethods = ["kd"]\n\n[accel]\nbf16 = true\n')
    s = study_from_args(parser.parse_args(["run", str(f), "--no-channels-last"]))
    assert (s.accel.channels_last, s.accel.bf16) == (False, True)
    s = study_from_args(parser.parse_args(["run", "--method", "kd", "--compile", "--no-teacher-cache"]))
    assert (s.accel.compile, s.accel.teacher_cache, s.accel.channels_last) == (True, False, True)


def test_cifar_studies_give_every_trial_the_papers_crop_and_flip():
    """The equal-budget arm on CIFAR: standard crop+flip is the base, the searched strength adds on
    top (so strength 0 is the published augmentation); the default digits study is unchanged."""
    for path in STUDIES:
        study = Study.read(path)
        expected = "standard+strength" if study.dataset.startswith("cifar") else "strength"
        assert study.recipe.augment == expected, path.name


def test_the_augment_flag_sets_the_recipes_policy(tmp_path):
    import argparse

    from audit.commands.run import register, study_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["run", "--method", "kd", "--augment", "standard+strength", "--epochs", "3"])
    study = study_from_args(args)
    assert study.recipe.augment == "standard+strength" and study.recipe.epochs == 3
    with pytest.raises(AuditError, match="unknown augmentation policy 'cutmix'"):
        study_from_args(parser.parse_args(["run", "--method", "kd", "--augment", "cutmix"]))
