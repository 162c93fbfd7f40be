"""Teachers, trained once per (data set, architecture, seed, recipe) and cached with provenance.

A cache entry is ``<key>.safetensors`` (weights only: loading never unpickles objects) and
``<key>.json`` (provenance and the weights' sha256). An entry whose checksum or identity does not
match is reported and retrained, never used.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file
from torch import nn

from audit.engine.data import Splits
from audit.engine.datasets import dataset_info
from audit.engine.models import build_model
from audit.engine.train import Accel, Recipe, train_student
from audit.errors import AuditError
from methods.catalogue import BASELINE

# 60 epochs: on the default digits split (719 training images) the teacher reaches 99.4 % on test
# at 60 epochs and 99.0 % at 30; the default audit needs a teacher clearly above its student.
TEACHER_RECIPE = Recipe(epochs=60, batch_size=128, lr=0.1)
TEACHER_STRENGTH = 0.3


@dataclass
class Teacher:
    model: nn.Module
    arch: str
    meta: dict  # provenance: key, accuracies, recipe, seed, data checksum, sha256, created, versions
    from_cache: bool


def default_cache_dir() -> Path:
    return Path(os.environ.get("KD_AUDIT_CACHE", Path.home() / ".cache" / "kd-audit")) / "teachers"


def teacher_key(splits: Splits, arch: str, seed: int, recipe: Recipe, strength: float) -> tuple[str, dict]:
    ident = {
        "dataset": splits.info.name,
        "data_sha256": splits.checksum,
        "split_seed": splits.split_seed,
        "arch": arch,
        "seed": seed,
        "recipe": recipe.to_dict(),
        "strength": strength,
    }
    # Named only where they differ from a study's usual splits, so existing entries keep their keys:
    # a teacher trained on the whole training split, or on inputs normalised with a source's constants.
    if len(splits.val) == 0:
        ident["whole_train_split"] = True
    own = dataset_info(splits.info.name)
    if (splits.info.mean, splits.info.std) != (own.mean, own.std):
        ident["normalize"] = [list(splits.info.mean), list(splits.info.std)]
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    return f"{splits.info.name}-{arch}-s{seed}-{key}", ident


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _try_load(weights: Path, meta_path: Path, ident: dict, splits: Splits, arch: str, *,
              say: bool = True) -> tuple[nn.Module, dict] | None:
    """The cached teacher if it is intact and is the one asked for; ``None`` (with a reason logged) otherwise."""
    if not (weights.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("its provenance file holds no JSON object")
        if meta.get("ident") != ident:
            raise ValueError("its identity does not match the request")
        if sha256_file(weights) != meta.get("sha256"):
            raise ValueError("its weights do not match their recorded sha256")
        model = build_model(arch, in_channels=splits.info.shape[0], num_classes=splits.info.num_classes)
        model.load_state_dict(load_file(weights))
        return model, meta
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        if say:
            print(f"teacher cache entry {weights.name} is unusable ({exc}); retraining")
        return None


def entry(splits: Splits, arch: str, *, seed: int = 0, recipe: Recipe = TEACHER_RECIPE, strength: float = TEACHER_STRENGTH,
          cache_dir: Path | None = None, accel: Accel = Accel()) -> tuple[Path, Path, str, dict]:
    """(weights file, provenance file, key, identity) of a teacher's cache entry; ``accel`` as it acts on the device."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key, ident = teacher_key(splits, arch, seed, recipe, strength)
    if accel.bf16:  # the one speed setting that changes the weights enough to be a different teacher
        key, ident = f"{key}-bf16", {**ident, "bf16": True}
    return cache / f"{key}.safetensors", cache / f"{key}.json", key, ident


def get_teacher(
    splits: Splits,
    arch: str,
    *,
    seed: int = 0,
    recipe: Recipe = TEACHER_RECIPE,
    strength: float = TEACHER_STRENGTH,
    cache_dir: Path | None = None,
    accel: Accel = Accel(),
) -> Teacher:
    """The cached teacher or a freshly trained one (trained on the train split, never on val or test)."""
    device = splits.train.x.device
    accel = accel.on(device)
    weights, meta_path, key, ident = entry(splits, arch, seed=seed, recipe=recipe, strength=strength,
                                           cache_dir=cache_dir, accel=accel)
    cache = weights.parent
    loaded = _try_load(weights, meta_path, ident, splits, arch)
    if loaded is None:
        # Another process on this cache (a second study, a parallel test worker) may be training the
        # same teacher: wait for it and load its entry rather than train it again.
        cache.mkdir(parents=True, exist_ok=True)
        with FileLock(cache / f".{key}.lock"):
            loaded = _try_load(weights, meta_path, ident, splits, arch, say=False)  # said above if unusable
            if loaded is None:
                return _train(splits, arch, seed, recipe, strength, accel, cache, key, ident)
    model, meta = loaded
    return Teacher(model.to(device).eval(), arch, meta, True)


def _train(splits: Splits, arch: str, seed: int, recipe: Recipe, strength: float, accel: Accel, cache: Path,
           key: str, ident: dict) -> Teacher:
    result, model = train_student(
        method=BASELINE, config={"strength": strength}, splits=splits, student_arch=arch,
        teacher=None, recipe=recipe, seed=seed, accel=accel,
    )
    if result.status != "ok":
        raise AuditError(f"teacher {arch} failed to train: {result.reason}")
    meta = {
        "key": key,
        "ident": ident,
        "val_acc": result.val_last,
        "test_acc": result.test_last,
        "epochs": result.epochs,
        "wall_s": result.wall_s,
        "accel": accel.label(),
    }
    meta = write_entry(cache, key, model, meta)
    return Teacher(model.eval(), arch, meta, False)


def write_entry(cache: Path, key: str, model: nn.Module, meta: dict) -> dict:
    """Write ``<key>.safetensors`` (the weights) and ``<key>.json`` (``meta`` with the weights'
    sha256, the time, torch's version and the host) into ``cache``; returns the full meta.

    Written under temporary names, then renamed: a killed process never leaves a half-written entry.
    """
    cache.mkdir(parents=True, exist_ok=True)
    weights, meta_path = cache / f"{key}.safetensors", cache / f"{key}.json"
    tmp_w = weights.with_name(f".{weights.name}.tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp_w))
    meta = {**meta, "sha256": sha256_file(tmp_w), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch.__version__, "host": platform.node()}
    tmp_m = meta_path.with_name(f".{meta_path.name}.tmp{os.getpid()}")
    tmp_m.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_w, weights)
    os.replace(tmp_m, meta_path)
    return meta


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights on the host: what runs are handed to rebuild a teacher (picklable, small)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
