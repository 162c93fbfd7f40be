"""Checkpoint files as KD users have them, read without running any code they might hold.

The formats (REPORT of the anchors, section 3; ``tests/data/anchors/checkpoint_formats.json``):

- RepDistiller's teacher files: ``{epoch, model, accuracy, optimizer}`` (``ckpt_epoch_<N>.pth``,
  the released teachers), ``{epoch, model, best_acc, optimizer}`` (``<arch>_best.pth``) and
  ``{opt, model, optimizer}`` (``<arch>_last.pth``, ``opt`` an ``argparse.Namespace``); its
  student files the same without ``optimizer``. mdistiller reads the same teacher files.
- mdistiller's student files ``{model}`` and its trainer files ``{epoch, model, optimizer,
  best_acc}`` whose ``model`` holds ``module.student.*``, ``module.teacher.*`` and the method's
  own parts (e.g. ``module.embed_s.*``, ``module.contrast.*`` for CRD).
- The seed survey's ``{model_state_dict, optimizer_state_dict, epoch}``, keys prefixed
  ``module.`` (DataParallel).
- A plain state_dict.

These files are old: legacy (non-zip) serialisation, storages tagged ``cuda:0``, optimizer state
holding numpy scalars (RepDistiller's learning-rate decay makes the rate a ``numpy.float64``).
They are read with ``torch.load(weights_only=True, map_location="cpu")``, whose unpickler builds
tensors and plain containers only, plus an explicit allow-list: numpy's scalar constructor under
its numpy 1 and numpy 2 names, ``numpy.dtype`` and the dtype classes of the scalars such files
hold, and ``argparse.Namespace`` (a plain attribute holder, so ``_last.pth`` files import too).
Anything else a file names (``os.system``, ``builtins.eval``, ...) is refused before it is called.
"""
from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audit.errors import AuditError

NETWORKS = ("student", "teacher")  # the two networks an mdistiller trainer file holds

_SCALAR = getattr(np, "_core", np.core).multiarray.scalar  # numpy 2 moved numpy.core to numpy._core
SAFE_GLOBALS: list = [
    (_SCALAR, "numpy.core.multiarray.scalar"),  # how numpy 1.x named it in the pickles it wrote
    (_SCALAR, "numpy._core.multiarray.scalar"),
    np.dtype,
    np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType, np.dtypes.Int32DType, np.dtypes.BoolDType,
    argparse.Namespace,
]


@dataclass
class CheckpointFile:
    """One network's tensors from a checkpoint file, in the file's own key names."""

    state: dict[str, torch.Tensor]
    format: str  # which layout the file has (see the module docstring)
    fields: list[str]  # the file's top-level entries
    epoch: int | None = None
    claimed_acc: float | None = None  # the accuracy the file itself records (`accuracy` or `best_acc`)
    prefix: str = ""  # stripped from every key
    dropped: list[str] = field(default_factory=list)  # other parts of a trainer file, not imported


def _refuse(path: Path, why: str) -> AuditError:
    return AuditError(f"cannot import {str(path)!r}: {why}")


def _load(path: Path) -> object:
    if not path.is_file():
        raise _refuse(path, "no such file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"got <class '([\w.]+)'>", text)
        if found:
            raise _refuse(path, f"it would load {found.group(1)}, which is not a tensor, a number, a container or an "
                                "allowed numpy/argparse type; files are read with weights_only=True and nothing else "
                                "is unpickled") from None
        detail = (text.split("WeightsUnpickler error:")[-1].strip() or text.strip() or "?").splitlines()[0][:120]
        raise _refuse(path, f"not a checkpoint that weights-only loading can read ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise _refuse(path, f"not a readable PyTorch checkpoint ({first})") from None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _number(value: object) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return round(float(value.item()), 4)  # a float32 tensor: 73.25 is stored as 73.2500000...
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return round(float(value), 4)
    return None


def _split_trainer(path: Path, state: dict[str, torch.Tensor], network: str | None) -> tuple[dict, str, list[str]]:
    """mdistiller's trainer file: the chosen network's keys, and the prefixes of what is left out."""
    present = [n for n in NETWORKS if any(k.startswith(f"module.{n}.") for k in state)]
    if network is None:
        if len(present) > 1:
            raise _refuse(path, "it holds module.student.* and module.teacher.* (an mdistiller trainer file); "
                                "choose one with --network student or --network teacher")
        network = present[0]
    elif network not in present:
        raise _refuse(path, f"it holds no module.{network}.* keys; it holds {', '.join(f'module.{n}.*' for n in present)}")
    prefix = f"module.{network}."
    kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    dropped = sorted({".".join(k.split(".")[:2]) for k in state if not k.startswith(prefix)})
    return kept, prefix, dropped


def read_checkpoint(path: Path, network: str | None = None) -> CheckpointFile:
    """The network's state_dict in ``path`` (any format above), its prefix stripped."""
    path = Path(path)
    if network is not None and network not in NETWORKS:
        raise AuditError(f"unknown network {network!r}; allowed: {', '.join(NETWORKS)}")
    obj = _load(path)
    if not isinstance(obj, dict):
        raise _refuse(path, f"it holds a {type(obj).__name__}, not a checkpoint dict or a state_dict")
    fields = sorted(map(str, obj))
    if _is_state_dict(obj):
        fmt, state = "state_dict", obj
    elif "model_state_dict" in obj:
        fmt, state = "survey (model_state_dict, optimizer_state_dict, epoch)", obj["model_state_dict"]
    elif "model" in obj:
        fmt, state = f"RepDistiller/mdistiller ({', '.join(fields)})", obj["model"]
    else:
        raise _refuse(path, f"no network in it: expected a 'model' or 'model_state_dict' entry or a plain state_dict, "
                            f"found {fields[:8]}")
    if not _is_state_dict(state):
        raise _refuse(path, "its network entry is not a state_dict of named tensors")
    state, prefix, dropped = dict(state), "", []
    if any(k.startswith(("module.student.", "module.teacher.")) for k in state):
        fmt = f"mdistiller trainer file ({', '.join(fields)})" if fmt != "state_dict" else fmt
        state, prefix, dropped = _split_trainer(path, state, network)
    elif network is not None:
        raise _refuse(path, "--network applies to files holding both networks (mdistiller trainer files); this one holds one")
    elif all(k.startswith("module.") for k in state):
        state, prefix = {k[len("module."):]: v for k, v in state.items()}, "module."
    epoch = obj.get("epoch") if not _is_state_dict(obj) else None
    claimed = None if _is_state_dict(obj) else _number(obj.get("accuracy", obj.get("best_acc")))
    return CheckpointFile(state, fmt, fields if not _is_state_dict(obj) else [], int(epoch) if isinstance(epoch, (int, np.integer)) else None,
                          claimed, prefix, dropped)
