"""Importing released teachers: every architecture of the CRD benchmark and of the seed survey,
from checkpoints built out of the anchors' published key lists and shapes
(tests/data/anchors/, read from their model definitions; values random); every file format KD
users have; and every refusal (wrong architecture, missing / extra / mis-shaped key, a malicious
pickle), each one line, exit code 2 and nothing written."""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from audit.cli import main
from audit.engine.checkpoint_keys import RULES, our_key, rules_for, to_ours
from audit.engine.models import build_model
from audit.engine.teacher_import import import_teacher, resolve_teacher_weights
from audit.errors import AuditError

ANCHORS = Path(__file__).parent / "data" / "anchors"
# Every architecture of the CRD benchmark (RepDistiller's models/, the same in mdistiller) and of
# the seed survey, with the key list of the anchor's own naming.
ANCHOR_FILES = sorted((ANCHORS / "repdistiller").glob("*.json")) + sorted((ANCHORS / "survey").glob("*.json"))
BIG = 4_000_000  # parameters: the file round trip of larger nets runs in the slow set


def _anchor(path: Path, old_names: bool = False) -> tuple[str, list[tuple[str, list[int]]], dict]:
    """(our architecture, [(anchor key, shape)] in the anchor's order, the whole record)."""
    d = json.loads(path.read_text())
    keys = [(k, s) for k, s in d["keys"]]
    if old_names:  # the survey's older flat WRN module: block1..3 and fc instead of layer1..3 and linear
        rename = d["alternative_naming"]["rename"]
        keys = [(next((new + k[len(old):] for old, new in rename.items() if k.startswith(old)), k), s) for k, s in keys]
    return path.stem, keys, d


def _random_state(keys: list[tuple[str, list[int]]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randint(0, 10_000, (), generator=g) if k.endswith("num_batches_tracked")
            else torch.randn(s, generator=g) for k, s in keys}


def _cases(mark_big: bool = True) -> list:
    cases = []
    for i, path in enumerate(ANCHOR_FILES):
        d = json.loads(path.read_text())
        marks = [pytest.mark.slow] if mark_big and d["counts_at_100"]["parameters"] > BIG else []
        cases.append(pytest.param(path, False, i, marks=marks, id=f"{path.parent.name}-{path.stem}"))
        if "alternative_naming" in d:
            cases.append(pytest.param(path, True, i, marks=marks, id=f"{path.parent.name}-{path.stem}-old-names"))
    return cases


def test_the_anchor_data_cover_both_benchmarks_and_every_family_has_rules():
    names = {p.stem for p in ANCHOR_FILES}
    assert {"resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
            "resnet50", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
            "mobilenetv2", "shufflenet_v1", "shufflenet_v2"} <= names
    assert {f"survey_resnet{d}" for d in (8, 14, 18, 20, 26, 32, 44, 56)} <= names
    assert len([n for n in names if n.startswith("survey_wrn_")]) == 12
    families = {type(build_model(n, in_channels=3, num_classes=100)) for n in names}
    assert families == set(RULES)


@pytest.mark.parametrize("path,old_names,seed", [c.values for c in _cases(False)], ids=[c.id for c in _cases(False)])
def test_every_anchor_key_maps_one_to_one_in_the_anchors_order(path, old_names, seed):
    """Each anchor key matches one rule, and the i-th anchor entry lands on our i-th entry with the
    same shape: the anchors register their modules in our order (names aside), so the order is an
    independent witness that every tensor lands where it should."""
    arch, keys, d = _anchor(path, old_names)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = build_model(arch, in_channels=3, num_classes=d["num_classes"])
    ours = list(model.state_dict().items())
    rules = rules_for(model)
    assert len(keys) == len(ours)
    for (key, shape), (name, tensor) in zip(keys, ours):
        assert our_key(rules, key) == name, key
        assert list(tensor.shape) == shape, key
    state = _random_state(keys, seed)
    mapped, notes = to_ours(model, state, arch)
    assert notes == [] and list(mapped) == [n for n, _ in ours]
    for (key, _), name in zip(keys, mapped):
        assert mapped[name] is state[key]


@pytest.mark.parametrize("path,old_names,seed", _cases())
def test_every_architecture_imports_from_a_file(path, old_names, seed, tmp_path):
    """A checkpoint of each architecture, written in one of the formats (they rotate over the
    architectures; each format is tested on its own below), imported into a cache entry whose
    every tensor is the anchor's tensor of the same position."""
    arch, keys, d = _anchor(path, old_names)
    state = _random_state(keys, seed)
    writers = list(FORMATS.values())
    file = writers[seed % len(writers)](state, tmp_path)
    entry = import_teacher(file, arch=arch, dataset="cifar100", cache_dir=tmp_path / "cache")
    loaded = load_file(entry)
    ours = build_model(arch, in_channels=3, num_classes=100).state_dict()
    assert set(loaded) == set(ours)
    for (key, _), name in zip(keys, ours):
        assert torch.equal(loaded[name], state[key].to(ours[name].dtype)), (key, name)
    meta = json.loads(entry.with_suffix(".json").read_text())
    assert meta["ident"]["arch"] == arch and meta["source"]["sha256"] == _sha(file)


# --- the formats -------------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sgd_state(lr: object = 0.05) -> dict:
    # RepDistiller's step decay makes lr a numpy.float64 (opt.learning_rate * decay ** np.sum(...)).
    return {"state": {}, "param_groups": [{"lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False,
                                            "dampening": 0, "params": [0, 1, 2]}]}


def _save(obj: object, path: Path, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


FORMATS = {
    "repdistiller-teacher-ckpt": lambda s, d: _save({"epoch": 240, "model": s, "accuracy": torch.tensor([73.25]),
                                                    "optimizer": _sgd_state(np.float64(0.0005))}, d / "ckpt_epoch_240.pth"),
    "repdistiller-teacher-best": lambda s, d: _save({"epoch": 238, "model": s, "best_acc": torch.tensor([73.5]),
                                                    "optimizer": _sgd_state()}, d / "best.pth"),
    "repdistiller-teacher-last": lambda s, d: _save({"opt": argparse.Namespace(model="resnet56", learning_rate=0.05),
                                                    "model": s, "optimizer": _sgd_state()}, d / "last.pth"),
    "repdistiller-student-best": lambda s, d: _save({"epoch": 230, "model": s, "best_acc": torch.tensor([70.1])}, d / "s.pth"),
    "mdistiller-student": lambda s, d: _save({"model": s}, d / "student_best"),
    "survey-dataparallel-legacy": lambda s, d: _save({"model_state_dict": {f"module.{k}": v for k, v in s.items()},
                                                     "optimizer_state_dict": _sgd_state(np.float64(0.001)), "epoch": 199},
                                                    d / "resnet_best.pth.tar", legacy=True),
    "plain-state-dict": lambda s, d: _save(s, d / "weights.pt"),
}


def _resnet8_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return _random_state(_anchor(ANCHORS / "repdistiller" / "resnet8.json")[1], seed)


def _check_resnet8(entry: Path, state: dict[str, torch.Tensor]) -> dict:
    loaded = load_file(entry)
    keys = [k for k, _ in _anchor(ANCHORS / "repdistiller" / "resnet8.json")[1]]
    assert len(loaded) == len(keys)
    for key, name in zip(keys, build_model("resnet8", in_channels=3, num_classes=100).state_dict()):
        assert torch.equal(loaded[name], state[key])
    return json.loads(entry.with_suffix(".json").read_text())


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_imports_and_records_its_provenance(fmt, tmp_path):
    state = _resnet8_state()
    file = FORMATS[fmt](state, tmp_path)
    entry = import_teacher(file, arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "cache")
    meta = _check_resnet8(entry, state)
    src = meta["source"]
    assert src["sha256"] == _sha(file) and src["path"] == str(file.resolve())
    expect = {"repdistiller-teacher-ckpt": (240, 73.25), "repdistiller-teacher-best": (238, 73.5),
              "repdistiller-student-best": (230, 70.1), "survey-dataparallel-legacy": (199, None)}
    epoch, acc = expect.get(fmt, (None, None))
    assert src["epoch"] == epoch
    assert (src["claimed_acc"] is None) if acc is None else src["claimed_acc"] == pytest.approx(acc, abs=1e-4)
    assert src["prefix_stripped"] == ("module." if fmt.startswith("survey") else "")
    # Importing the same file again gives the same entry.
    assert import_teacher(file, arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "cache") == entry


def test_storages_tagged_cuda_load_on_a_machine_without_one(tmp_path, monkeypatch):
    state = _resnet8_state()
    with monkeypatch.context() as m:  # write the file as a GPU machine would: every storage tagged cuda:0
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        file = FORMATS["repdistiller-teacher-ckpt"](state, tmp_path)
        legacy = FORMATS["survey-dataparallel-legacy"](state, tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # the tags are really there
            torch.load(file, weights_only=True)
    for f in (file, legacy):
        _check_resnet8(import_teacher(f, arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "cache"), state)


def test_numpy_1_scalars_in_a_legacy_file(tmp_path):
    """A 2019 file names numpy's scalar constructor ``numpy.core.multiarray.scalar``; numpy 2 writes
    ``numpy._core``: rewrite the name as numpy 1 wrote it (legacy files are a plain pickle stream)."""
    state = _resnet8_state()
    file = FORMATS["survey-dataparallel-legacy"](state, tmp_path)
    blob = file.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in blob
    file.write_bytes(blob.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    _check_resnet8(import_teacher(file, arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "cache"), state)


def test_mdistiller_trainer_files_hold_both_networks(tmp_path):
    student = _random_state(_anchor(ANCHORS / "repdistiller" / "resnet8x4.json")[1], 1)
    teacher = _random_state(_anchor(ANCHORS / "repdistiller" / "resnet32x4.json")[1], 2)
    model = {**{f"module.student.{k}": v for k, v in student.items()},
             **{f"module.teacher.{k}": v for k, v in teacher.items()},
             "module.embed_s.linear.weight": torch.zeros(128, 256), "module.contrast.memory_v1": torch.zeros(4, 128)}
    file = _save({"epoch": 240, "model": model, "optimizer": _sgd_state(), "best_acc": 76.3}, tmp_path / "latest")
    cache = tmp_path / "cache"
    with pytest.raises(AuditError, match="choose one with --network student or --network teacher"):
        import_teacher(file, arch="resnet8x4", dataset="cifar100", cache_dir=cache)
    assert not cache.exists()
    s = import_teacher(file, arch="resnet8x4", dataset="cifar100", cache_dir=cache, network="student")
    t = import_teacher(file, arch="resnet32x4", dataset="cifar100", cache_dir=cache, network="teacher")
    for entry, state, arch in ((s, student, "resnet8x4"), (t, teacher, "resnet32x4")):
        keys = [k for k, _ in _anchor(ANCHORS / "repdistiller" / f"{arch}.json")[1]]
        loaded = load_file(entry)
        ours = build_model(arch, in_channels=3, num_classes=100).state_dict()
        assert all(torch.equal(loaded[n], state[k]) for k, n in zip(keys, ours))
        meta = json.loads(entry.with_suffix(".json").read_text())
        assert meta["source"]["left_out"] == ["module.contrast", "module.embed_s", "module.teacher" if arch == "resnet8x4" else "module.student"]
    with pytest.raises(AuditError, match="--network applies to files holding both networks"):
        import_teacher(FORMATS["mdistiller-student"](student, tmp_path), arch="resnet8x4", dataset="cifar100",
                       cache_dir=cache, network="student")


def test_files_saved_before_pytorch_0_4_1_lack_the_batch_counters(tmp_path):
    state = {k: v for k, v in _resnet8_state().items() if not k.endswith("num_batches_tracked")}
    entry = import_teacher(_save({"model": state}, tmp_path / "old.pth"), arch="resnet8", dataset="cifar100",
                           cache_dir=tmp_path / "cache")
    loaded = load_file(entry)
    assert all(int(v) == 0 for k, v in loaded.items() if k.endswith("num_batches_tracked"))
    assert "PyTorch < 0.4.1" in json.loads(entry.with_suffix(".json").read_text())["source"]["notes"][0]
    # Some counters but not all: a damaged file, refused.
    partial = _resnet8_state()
    del partial["layer2.0.bn1.num_batches_tracked"]
    with pytest.raises(AuditError, match="no tensor for resnet8's 'stages.1.0.bn1.num_batches_tracked'"):
        import_teacher(_save({"model": partial}, tmp_path / "p.pth"), arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "c2")


# --- refusals through the command: one line, exit 2, nothing written ---------------------------------


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _import(tmp_path: Path, file: Path, arch: str = "resnet8", dataset: str = "cifar100", *extra: str) -> int:
    return main(["teachers", "import", str(file), "--arch", arch, "--dataset", dataset, "--cache-dir", str(tmp_path / "cache"), *extra])


def _refused(capsys, tmp_path: Path, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def _bad_files(tmp_path: Path) -> dict:
    state = _resnet8_state()
    missing = dict(state)
    del missing["layer3.0.conv2.weight"]
    extra = {**state, "layer4.0.conv1.weight": torch.zeros(3)}
    shaped = {**state, "layer2.0.conv2.weight": torch.zeros(32, 32, 1, 1)}
    nan = {**state, "fc.bias": torch.full((100,), float("nan"))}
    resnet56 = _random_state(_anchor(ANCHORS / "repdistiller" / "resnet56.json")[1])
    return {
        "wrong architecture": (_save({"model": resnet56}, tmp_path / "r56.pth"), "resnet8",
                               ["as resnet8 for cifar100", "is no part of resnet8", "fit --arch resnet56"]),
        "missing key": (_save({"model": missing}, tmp_path / "m.pth"), "resnet8", ["no tensor for resnet8's 'stages.2.0.conv2.weight'"]),
        "extra key": (_save({"model": extra}, tmp_path / "e.pth"), "resnet8", ["'layer4.0.conv1.weight', which is no part of resnet8"]),
        "wrong shape": (_save({"model": shaped}, tmp_path / "s.pth"), "resnet8",
                        ["'layer2.0.conv2.weight' has shape [32, 32, 1, 1], resnet8 expects [32, 32, 3, 3]"]),
        "other data set": (_save({"model": state}, tmp_path / "c.pth"), "resnet8",
                           ["resnet8 expects [10, 64] (a checkpoint for 100 classes; this data set has 10)"]),
        "non-finite weights": (_save({"model": nan}, tmp_path / "n.pth"), "resnet8", ["'fc.bias' holds NaN"]),
        "not a checkpoint": (tmp_path / "notes.txt", "resnet8", ["not a checkpoint that weights-only loading can read"]),
        "a list": (_save([torch.zeros(1)], tmp_path / "l.pth"), "resnet8", ["it holds a list"]),
        "no network": (_save({"epoch": 3, "weights": state}, tmp_path / "w.pth"), "resnet8", ["expected a 'model' or 'model_state_dict'"]),
        "unknown architecture": (_save({"model": state}, tmp_path / "u.pth"), "resnet9", ["unknown architecture 'resnet9'"]),
        "no such file": (tmp_path / "nope.pth", "resnet8", ["no such file"]),
    }


@pytest.mark.parametrize("case", ["wrong architecture", "missing key", "extra key", "wrong shape", "other data set",
                                  "non-finite weights", "not a checkpoint", "a list", "no network",
                                  "unknown architecture", "no such file"])
def test_bad_checkpoints_are_refused_with_one_line(case, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    file, arch, fragments = _bad_files(tmp_path)[case]
    dataset = "cifar10" if case == "other data set" else "cifar100"
    _refused(capsys, tmp_path, _import(tmp_path, file, arch, dataset), *fragments)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("how", ["torch.save", "legacy torch.save", "pickle protocol 2", "pickle protocol 4"])
def test_a_malicious_pickle_is_refused_and_never_run(how, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = {"model": _resnet8_state(), "epoch": _Evil(marker)}
    file = tmp_path / "evil.pth"
    if how.startswith("pickle"):  # no tensors: a plain pickle of one names torch's own byte loader first
        file.write_bytes(pickle.dumps({"epoch": _Evil(marker)}, protocol=int(how[-1])))
    else:
        _save(payload, file, legacy=how.startswith("legacy"))
    # Protocol 4 is refused at its first frame, before the global is even read.
    expect = ("not a checkpoint that weights-only loading can read",) if how.endswith("4") else ("it would load posix.system", "weights_only=True")
    _refused(capsys, tmp_path, _import(tmp_path, file), *expect)
    assert not marker.exists()


def test_the_command_prints_the_entry_and_run_accepts_it(tmp_path, capsys):
    state = _resnet8_state()
    file = FORMATS["repdistiller-teacher-ckpt"](state, tmp_path)
    assert _import(tmp_path, file) == 0
    entry = Path(capsys.readouterr().out.strip())
    assert entry.suffix == ".safetensors" and entry.parent == tmp_path / "cache"
    _check_resnet8(entry, state)
    resolved, sha = resolve_teacher_weights(entry, arch="resnet8", dataset="cifar100")
    assert resolved == entry and sha == json.loads(entry.with_suffix(".json").read_text())["sha256"]
    # The original file resolves to the same entry (imported on the way).
    assert resolve_teacher_weights(file, arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "cache") == (entry, sha)
    with pytest.raises(AuditError, match="are a resnet8 for cifar100, but the study's --teacher is resnet20"):
        resolve_teacher_weights(entry, arch="resnet20", dataset="cifar100")
    with pytest.raises(AuditError, match="not the ones this study used"):
        resolve_teacher_weights(entry, arch="resnet8", dataset="cifar100", expect_sha256="0" * 64)
    blob = bytearray(entry.read_bytes())
    blob[-5] ^= 0xFF
    entry.write_bytes(bytes(blob))
    with pytest.raises(AuditError, match="do not match the sha256 recorded beside them"):
        resolve_teacher_weights(entry, arch="resnet8", dataset="cifar100")


def test_the_importer_reads_a_buffer_of_every_allowed_type_only(tmp_path):
    """The allow-list is short: an argparse.Namespace and numpy scalars load; a set of other
    harmless-looking globals (collections.OrderedDict is built in; functools.partial is not) does not."""
    import functools

    file = _save({"model": _resnet8_state(), "opt": argparse.Namespace(x=1), "hook": functools.partial(print)}, tmp_path / "f.pth")
    with pytest.raises(AuditError, match="it would load functools.partial"):
        import_teacher(file, arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "cache")
    buf = io.BytesIO()
    torch.save({"model": _resnet8_state(), "lr": np.float32(0.1), "steps": np.int64(3), "ok": np.bool_(True)}, buf)
    (tmp_path / "g.pth").write_bytes(buf.getvalue())
    import_teacher(tmp_path / "g.pth", arch="resnet8", dataset="cifar100", cache_dir=tmp_path / "cache")
