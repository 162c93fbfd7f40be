"""`audit run` as a user runs it: bad input is one line and exit 2 with nothing left behind;
small end-to-end studies through the local backend and through Ray Tune."""
import math
import re

import optuna
import pandas as pd
import pytest

from audit.cli import main
from audit.search.storage import open_storage


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nosuch"], "unknown method 'nosuch'; allowed:"),
        (["--method", "kd", "--student", "resnet9"], "unknown student architecture 'resnet9'; allowed:"),
        (["--method", "kd", "--teacher", "nope"], "unknown teacher architecture 'nope'; allowed:"),
        (["--method", "kd", "--dataset", "imagenet"], "unknown data set 'imagenet'; allowed:"),
        (["--method", "kd", "--trials", "0"], "--trials must be a positive integer"),
        (["--method", "kd", "--seeds", "-1"], "--seeds must be a positive integer"),
        (["--method", "kd", "--epochs", "x"], "--epochs must be a positive integer"),
        (["--method", "kd", "--backend", "spark"], "unknown backend 'spark'; allowed: local, ray"),
        (["--method", "kd", "--augment", "mixup"], "unknown augmentation policy 'mixup'; allowed:"),
        (["--method", "kd", "--dataset", "cifar10", "--data-dir", "/nonexistent/dir"], "is not a readable folder"),
        (["--method", "kd", "--dataset", "cifar10"], "needs --data-dir"),
        ([], "give at least one --method"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_folder(tmp_path, capsys, args, message):
    out = tmp_path / "reports"
    backend = [] if "--backend" in args else ["--backend", "local"]
    code = main(["run", *args, *backend, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_argparse_errors_exit_2(capsys):
    assert main(["run", "--trials", "many"]) == 2
    assert "--trials must be a positive integer" in capsys.readouterr().err


def test_existing_study_folder_is_refused(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    assert main(["run", "--method", "kd", "--out", str(tmp_path), "--name", "s", "--backend", "local"]) == 2
    assert "exists" in capsys.readouterr().err


def _check_study(folder, methods, trials, seeds):
    results = pd.read_csv(folder / "results.csv")
    for method in methods:
        rows = results[results.method == method]
        search, confirm = rows[rows.phase == "search"], rows[rows.phase == "confirm"]
        assert len(search) == trials and (search.status == "ok").all()
        assert sorted(confirm.seed) == list(range(1, seeds + 1))
        # The search never saw the test set; confirmation is scored on it.
        assert search.test_acc_last.isna().all()
        assert confirm.test_acc_last.between(0, 100).all()
        for col in ("epochs", "steps", "images", "flops", "wall_s"):
            assert (rows[col] > 0).all(), col
    assert (folder / "optuna.journal").is_file() and not (folder / "optuna.db").exists()  # the folder's own storage
    storage = open_storage(None, folder)
    for method in methods:
        ostudy = optuna.load_study(study_name=f"{folder.name}.{method}", storage=storage)
        assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in ostudy.trials) == trials
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary.method) == methods
    assert not math.isnan(summary.loc[summary.method == "kd", "vs_nokd"].iloc[0])
    assert (folder / "study.toml").exists() and (folder / "curves.csv").exists()


@pytest.mark.slow
def test_end_to_end_local(tmp_path, teacher_cache, capsys):
    code = main(["run", "--method", "fitnet", "--trials", "2", "--seeds", "2", "--epochs", "1", "--backend", "local",
                 "--out", str(tmp_path), "--name", "loc", "--cache-dir", str(teacher_cache), "--no-channels-last"])
    assert code == 0
    out = capsys.readouterr().out
    assert "feature_kd" in out and "confirmed test accuracy" in out
    # The compute estimate is printed at start: 3 methods x (2 trials + 2 seeds) x 1 epoch x 719 images
    # (the training split of the default digits design: half of the 1,797 images, less validation).
    assert re.search(r"^compute estimate: 8,628 training images( \+ [\d,]+ to train the teacher)?, at [\d,]+ images/s measured", out, re.M)
    # Output to a log (not a terminal) gets a line per finished run instead of live bars.
    assert re.search(r"^search feature_kd 2/2: val [\d.]+%, best [\d.]+%, [\d.]+s$", out, re.M)
    assert re.search(r"^confirm nokd seed 2: test [\d.]+%, [\d.]+s$", out, re.M)
    _check_study(tmp_path / "loc", ["nokd", "kd", "feature_kd"], 2, 2)
    # The speed settings that acted are recorded with every run (bf16/compile are CUDA-only).
    assert set(pd.read_csv(tmp_path / "loc" / "results.csv").accel) == {"teacher_cache"}


@pytest.mark.slow
def test_end_to_end_ray(tmp_path, teacher_cache, ray_session):
    # Two trials per method: by default as many run at once as the CPUs fit, so Tune still runs trials side by side.
    code = main(["run", "--method", "feature_kd", "--trials", "2", "--seeds", "2", "--epochs", "1",
                 "--out", str(tmp_path), "--name", "ray", "--cache-dir", str(teacher_cache)])
    assert code == 0
    _check_study(tmp_path / "ray", ["nokd", "kd", "feature_kd"], 2, 2)
    assert set(pd.read_csv(tmp_path / "ray" / "results.csv").accel) == {"channels_last+teacher_cache"}


def test_an_address_where_nothing_answers_fails_in_seconds(tmp_path, capsys):
    import socket
    import time

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main(["run", "--method", "kd", "--trials", "1", "--seeds", "1", "--epochs", "1",
                 "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and time.monotonic() - start < 30
    assert f"cannot join the Ray cluster at '127.0.0.1:{port}': nothing answers there" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
