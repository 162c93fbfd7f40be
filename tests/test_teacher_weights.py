"""`audit run --teacher-weights`: a released teacher used instead of training one, offline on
CIFAR-format files written by the test, through both backends; recorded in teacher.json (with its
accuracy measured on the study's splits) and study.toml, and part of the budget; bad weights are
one line, exit 2 and no study folder."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_data import write_cifar10, write_cifar100

from audit.cli import main
from audit.engine.data import load_splits
from audit.engine.models import build_model
from audit.engine.train import accuracy
from audit.study import Study

RESNET8_KEYS = json.loads((Path(__file__).parent / "data" / "anchors" / "repdistiller" / "resnet8.json").read_text())["keys"]


def _released_resnet8(path, num_classes: int, seed: int = 0):
    """A RepDistiller teacher file for resnet8 (its own key names), random but sane weights."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in RESNET8_KEYS:
        shape = [num_classes, *shape[1:]] if key.startswith("fc.") else shape
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var") or (key.endswith("weight") and len(shape) == 1):
            state[key] = 1.0 + 0.1 * torch.rand(shape, generator=g)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=g)
    torch.save({"epoch": 240, "model": state, "accuracy": torch.tensor([91.5]), "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def _run(tmp_path, data, weights, *extra: str, name: str = "s", backend: str = "local") -> int:
    return main(["run", "--method", "kd", "--dataset", "cifar10", "--data-dir", str(data), "--teacher", "resnet8",
                 "--student", "resnet8", "--teacher-weights", str(weights), "--trials", "1", "--seeds", "1", "--epochs", "1",
                 "--backend", backend, "--out", str(tmp_path / "reports"), "--name", name, "--cache-dir", str(tmp_path / "cache"),
                 *extra])


@pytest.fixture
def cifar10(tmp_path):
    write_cifar10(tmp_path / "data")
    return tmp_path / "data"


def _check_study(folder, weights_file, data) -> dict:
    teacher = json.loads((folder / "teacher.json").read_text())
    study = tomllib.loads((folder / "study.toml").read_text())
    entry = teacher["entry"]
    assert study["teacher_weights"] == entry and study["teacher_sha256"] == teacher["sha256"]
    assert teacher["source"]["claimed_acc"] == pytest.approx(91.5) and teacher["source"]["epoch"] == 240
    # The accuracy recorded is the released weights' own on this study's test split.
    splits = load_splits("cifar10", split_seed=0, data_dir=data)
    model = build_model("resnet8", in_channels=3, num_classes=10)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(entry))
    assert teacher["test_acc"] == pytest.approx(accuracy(model.eval(), splits.test))
    results = pd.read_csv(folder / "results.csv")
    assert set(results.method) == {"nokd", "kd"} and (results.status == "ok").all()
    assert (results.budget_hash == Study.read(folder / "study.toml").budget_hash()).all()
    return study


@pytest.mark.slow
def test_a_released_teacher_replaces_the_trained_one_local(tmp_path, cifar10, capsys):
    weights = _released_resnet8(tmp_path / "ckpt_epoch_240.pth", 10)
    assert _run(tmp_path, cifar10, weights) == 0
    out = capsys.readouterr().out
    assert "released, imported from ckpt_epoch_240.pth" in out
    _check_study(tmp_path / "reports" / "s", weights, cifar10)
    # Nothing was trained for the teacher: the cache holds the imported entry only.
    assert [p.name.split("-imported-")[0] for p in (tmp_path / "cache").glob("*.safetensors")] == ["cifar10-resnet8"]


def test_the_teacher_is_part_of_the_budget(tmp_path, cifar10):
    """Another teacher is another budget; the same teacher given as its file or its entry is the
    same budget; a study that trains its teacher keeps the hash it always had."""
    from audit.pipeline import Paths, prepare

    def resolved(weights) -> Study:
        study = Study(name="x", methods=["kd"], dataset="cifar10", teacher="resnet8", teacher_weights=str(weights))
        prepare(study, Paths(out=tmp_path / "reports", data_dir=cifar10, cache_dir=tmp_path / "cache"))
        return study

    first = resolved(_released_resnet8(tmp_path / "a.pth", 10))
    assert first.teacher_weights.endswith(".safetensors") and len(first.teacher_sha256) == 64
    again = resolved(first.teacher_weights)
    other = resolved(_released_resnet8(tmp_path / "b.pth", 10, seed=1))
    assert first.budget_hash() == again.budget_hash() != other.budget_hash()
    trained = Study(name="x", methods=["kd"], dataset="cifar10", teacher="resnet8")
    assert trained.budget_hash() != first.budget_hash() and "teacher_sha256" not in trained.budget()


@pytest.mark.slow
def test_a_released_teacher_replaces_the_trained_one_ray(tmp_path, cifar10, ray_session):
    weights = _released_resnet8(tmp_path / "ckpt_epoch_240.pth", 10)
    assert _run(tmp_path, cifar10, weights, backend="ray") == 0
    _check_study(tmp_path / "reports" / "s", weights, cifar10)


@pytest.mark.slow
def test_resume_keeps_the_released_teacher_and_refuses_another(tmp_path, cifar10, capsys):
    weights = _released_resnet8(tmp_path / "t.pth", 10)
    assert _run(tmp_path, cifar10, weights) == 0
    folder = tmp_path / "reports" / "s"
    first = json.loads((folder / "teacher.json").read_text())
    assert main(["resume", str(folder), "--data-dir", str(cifar10), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert json.loads((folder / "teacher.json").read_text())["sha256"] == first["sha256"]
    # The entry replaced behind the study's back: refused before anything runs.
    entry = first["entry"]
    meta = json.loads(open(entry.replace(".safetensors", ".json")).read())
    other = build_model("resnet8", in_channels=3, num_classes=10)
    from pathlib import Path

    from audit.engine.teachers import write_entry

    write_entry(Path(entry).parent, meta["key"], other, {k: v for k, v in meta.items() if k not in ("sha256", "created", "torch", "host")})
    capsys.readouterr()
    assert main(["resume", str(folder), "--data-dir", str(cifar10), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "are not the ones this study used" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("case", ["no such file", "another architecture", "another data set", "a wrong checkpoint"])
def test_bad_teacher_weights_are_one_line_and_no_folder(case, tmp_path, cifar10, capsys):
    if case == "no such file":
        weights, message = tmp_path / "missing.pth", "--teacher-weights"
    elif case == "another architecture":  # an entry for resnet8 given with --teacher resnet20
        entry = tmp_path / "entry"
        assert main(["teachers", "import", str(_released_resnet8(tmp_path / "t.pth", 10)), "--arch", "resnet8",
                     "--dataset", "cifar10", "--cache-dir", str(entry)]) == 0
        weights, message = next(entry.glob("*.safetensors")), "are a resnet8 for cifar10, but the study's --teacher is resnet20"
    elif case == "another data set":
        weights, message = _released_resnet8(tmp_path / "c100.pth", 100), "a checkpoint for 100 classes; this data set has 10"
    else:
        write_cifar100(tmp_path / "data")
        torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
        weights, message = tmp_path / "bad.pth", "'conv.weight', which is no part of resnet8"
    capsys.readouterr()
    teacher = ["--teacher", "resnet20"] if case == "another architecture" else []
    code = main(["run", "--method", "kd", "--dataset", "cifar10", "--data-dir", str(cifar10), "--teacher", "resnet8",
                 *teacher, "--teacher-weights", str(weights), "--trials", "1", "--seeds", "1", "--epochs", "1",
                 "--backend", "local", "--out", str(tmp_path / "reports"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "reports").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
