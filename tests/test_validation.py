"""Every study-file key and numeric flag is type- and range-checked before anything is written: one
line naming the key (or flag), the value and what is allowed, exit 2, no folder. Sizes beyond what
a user can mean are refused from the compute estimate unless --force."""
from __future__ import annotations

import pytest

from audit.budget import Estimate, check_limit, duration, estimate
from audit.cli import main
from audit.errors import AuditError

GOOD = 'name = "v"\nmethods = ["kd"]\nbackend = "local"\n'


def _refused(capsys, argv: list[str], out) -> str:  # noqa: ANN001
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    return err


@pytest.mark.parametrize(
    "toml, message",
    [
        ('methods = ["kd"]\n', "the study has no 'name'; a study file needs name = "),
        ('name = "v"\n', "the study has no 'methods'"),
        ('name = "v"\nmethods = 3\n', "study key 'methods' = 3: must be a non-empty list of method names"),
        (GOOD + "trials = true\n", "study key 'trials' = true: must be an integer >= 1"),
        (GOOD + "trials = 2.5\n", "study key 'trials' = 2.5: must be an integer >= 1"),
        (GOOD + "seeds = [1.5]\n", "study key 'seeds' = [1.5]: must be a non-empty list of distinct integers from 0 to 4294967295"),
        (GOOD + "seeds = 3\n", "study key 'seeds' = 3: must be a non-empty list"),
        (GOOD + "split_seed = -1\n", "study key 'split_seed' = -1: must be an integer from 0 to 4294967295"),
        (GOOD + "val_fraction = 1.5\n", "study key 'val_fraction' = 1.5: must be a number between 0 and 1"),
        (GOOD + "cpus_per_trial = nan\n", "study key 'cpus_per_trial' = NaN: must be a finite number > 0"),
        (GOOD + "gpus_per_trial = -1\n", "study key 'gpus_per_trial' = -1: must be a finite number >= 0"),
        (GOOD + "max_concurrent = 0\n", "study key 'max_concurrent' = 0: must be an integer >= 1"),
        (GOOD + "paper_protocol = 1\n", "study key 'paper_protocol' = 1: must be true or false"),
        (GOOD + "dataset = 7\n", "study key 'dataset' = 7: must be a data set name"),
        (GOOD + 'name = ""\n', None),  # a TOML error: a key given twice
        ('name = ""\nmethods = ["kd"]\n', "study name '' must be 1-100 letters"),
        (GOOD + "[recipe]\nlr = -0.1\n", "study key 'recipe.lr' = -0.1: must be a finite number > 0"),
        (GOOD + "[recipe]\nepochs = 1.5\n", "study key 'recipe.epochs' = 1.5: must be an integer >= 1"),
        (GOOD + "[recipe]\nmomentum = 1.0\n", "study key 'recipe.momentum' = 1.0: must be a number from 0 up to"),
        (GOOD + "[recipe]\nmilestones = [0.75, 0.5]\n", "study key 'recipe.milestones' = [0.75, 0.5]: must be non-decreasing"),
        (GOOD + "[recipe]\nschedule = \"linear\"\n", "study key 'recipe.schedule' = \"linear\": must be one of cosine, step"),
        (GOOD + "[recipe]\nwarmup = 3\n", "unknown [recipe] keys ['warmup']; allowed: epochs, batch_size"),
        (GOOD + "recipe = 3\n", "study key 'recipe' = 3: must be a [recipe] table"),
        (GOOD + "[accel]\nbf16 = \"yes\"\n", "study key 'accel.bf16' = \"yes\": must be true or false"),
        (GOOD + "[recipe]\nbatch_size = 1000000000\n", "[recipe] batch_size = 1000000000 is larger than the training split (719 images of digits); allowed: 2 to 719"),
    ],
)
def test_a_bad_study_file_is_one_line_naming_key_value_and_what_is_allowed(tmp_path, capsys, toml, message):
    path = tmp_path / "s.toml"
    path.write_text(toml)
    err = _refused(capsys, ["run", str(path), "--out", str(tmp_path / "out")], tmp_path / "out")
    assert err.startswith("audit: error: ")
    if message is not None:
        assert message in err, err


def test_a_study_file_that_is_not_text_is_named(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_bytes(b'name = "v"\nmethods = ["kd"]\n# \xff\xfe\n')
    err = _refused(capsys, ["run", str(path), "--out", str(tmp_path / "out")], tmp_path / "out")
    assert f"cannot read study file {str(path)!r}: it is not UTF-8 text" in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--cpus-per-trial", "nan"], "--cpus-per-trial must be a finite number > 0, got 'nan'"),
        (["--cpus-per-trial", "inf"], "--cpus-per-trial must be a finite number > 0, got 'inf'"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be a finite number > 0, got '0'"),
        (["--gpus-per-trial", "nan"], "--gpus-per-trial must be a finite number >= 0, got 'nan'"),
        (["--gpus-per-trial", "-0.5"], "--gpus-per-trial must be a finite number >= 0, got '-0.5'"),
        (["--split-seed", "-1"], "--split-seed must be an integer from 0 to 4294967295, got '-1'"),
        (["--split-seed", "99999999999"], "--split-seed must be an integer from 0 to 4294967295"),
        (["--max-failures", "-2"], "--max-failures must be an integer >= 0, got '-2'"),
        (["--name", ""], "study name '' must be 1-100 letters"),
    ],
)
def test_a_bad_numeric_flag_is_one_line(tmp_path, capsys, flags, message):
    err = _refused(capsys, ["run", "--method", "kd", "--backend", "local", *flags, "--out", str(tmp_path / "out")],
                   tmp_path / "out")
    assert message in err, err


@pytest.mark.parametrize("flag, value", [("--trials", "1000000000"), ("--epochs", "1000000"), ("--seeds", "1000000")])
def test_a_study_beyond_the_limit_is_refused_from_its_estimate_unless_forced(tmp_path, capsys, teacher_cache, flag, value):
    err = _refused(capsys, ["run", "--method", "kd", "--backend", "local", flag, value, "--out", str(tmp_path / "out"),
                            "--cache-dir", str(teacher_cache)], tmp_path / "out")
    assert "this study's training alone would take about" in err and "more than the 7.0 days limit" in err and "--force" in err


def test_the_estimate_counts_every_training_image():
    est = estimate(methods=3, trials=50, seeds=5, epochs=8, train_images=1437, per_image_s=1 / 2000, concurrency=2,
                   teacher_images=30 * 1437, teacher_per_image_s=1 / 1000)
    assert est.images == 3 * 55 * 8 * 1437
    assert est.seconds == pytest.approx(3 * 55 * 8 * 1437 / 2000 / 2 + 30 * 1437 / 1000)
    assert est.line() == ("compute estimate: 1,896,840 training images + 43,110 to train the teacher, at 2,000 images/s "
                          "measured for one trial, 2 at once: training alone about 8.6 min")
    check_limit(est, force=False)  # minutes: fine
    huge = Estimate(10**12, 0, 1 / 2000, 0.0, 1)
    with pytest.raises(AuditError, match="more than the 7.0 days limit"):
        check_limit(huge, force=False)
    check_limit(huge, force=True)
    assert duration(59) == "59 s" and duration(90) == "1.5 min" and duration(3 * 86400) == "3.0 days"
