"""Released teachers: a checkpoint file imported into a standard teacher-cache entry, and an
entry (or any importable file) used as a study's teacher instead of training one.

An imported entry is ``<data set>-<arch>-imported-<source sha256[:16]>.safetensors`` plus its
``.json``: the same weights-only file and provenance as a trained teacher's entry
(``audit.engine.teachers.write_entry``), where ``source`` records the file it came from (path,
sha256, format, the epoch and accuracy the file itself claims, the prefix stripped, the parts of
a trainer file left out, what was filled in). Importing the same file again gives the same entry.

Interfaces (used by ``audit teachers import``, ``audit run --teacher-weights`` and
``audit reproduce``):

- ``import_teacher(path, arch=, dataset=, cache_dir=, network=) -> Path``: the entry's weights.
- ``resolve_teacher_weights(path, arch=, dataset=, cache_dir=, expect_sha256=) -> (entry, sha256)``:
  an entry checked against the study's architecture and data set (a file that is not an entry
  is imported first); ``sha256`` identifies the teacher in a study's budget.
- ``imported_teacher(splits, entry, arch=, sha256=) -> Teacher``: the entry as a study's teacher,
  with its accuracy measured on the study's validation and test splits (``val_acc``,
  ``test_acc``) beside the accuracy its source file claims (``source.claimed_acc``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from audit.engine.checkpoint_keys import KeyMismatch, fitting_architectures, to_ours
from audit.engine.checkpoints import read_checkpoint
from audit.engine.data import Splits
from audit.engine.datasets import dataset_info
from audit.engine.models import build_model
from audit.engine.teachers import Teacher, default_cache_dir, sha256_file, write_entry
from audit.engine.train import accuracy
from audit.errors import AuditError

ENTRY_SUFFIX = ".safetensors"


def import_teacher(path: Path, *, arch: str, dataset: str, cache_dir: Path | None = None,
                   network: str | None = None) -> Path:
    """Import the checkpoint ``path`` as ``arch`` for ``dataset``; returns the entry's ``.safetensors``.

    Refused with one line (``AuditError``) before anything is written: an unreadable or unsafe
    file, a file of another architecture, a missing, extra or mis-shaped key, non-finite weights.
    """
    path = Path(path)
    info = dataset_info(dataset)
    model = build_model(arch, in_channels=info.shape[0], num_classes=info.num_classes)
    ckpt = read_checkpoint(path, network)
    try:
        state, notes = to_ours(model, ckpt.state, arch)
    except KeyMismatch as exc:
        fits = fitting_architectures(ckpt.state, in_channels=info.shape[0], num_classes=info.num_classes)
        hint = f"; its keys and shapes fit --arch {' or '.join(fits)}" if fits else ""
        raise AuditError(f"cannot import {str(path)!r} as {arch} for {dataset}: {exc}{hint}") from None
    model.load_state_dict(state)
    bad = next((k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise AuditError(f"cannot import {str(path)!r}: {bad!r} holds NaN or infinite values")
    source_sha = sha256_file(path)
    key = f"{dataset}-{arch}-imported-{source_sha[:16]}" + (f"-{network}" if network else "")
    meta = {
        "key": key,
        "ident": {"imported": True, "dataset": dataset, "arch": arch, "source_sha256": source_sha, "network": network},
        "source": {
            "path": str(path.resolve()), "sha256": source_sha, "format": ckpt.format, "fields": ckpt.fields,
            "epoch": ckpt.epoch, "claimed_acc": ckpt.claimed_acc, "prefix_stripped": ckpt.prefix,
            "left_out": ckpt.dropped, "notes": notes,
        },
    }
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    write_entry(cache, key, model, meta)
    return cache / f"{key}{ENTRY_SUFFIX}"


def _entry_meta(entry: Path) -> dict:
    meta_path = entry.with_suffix(".json")
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise AuditError(f"{str(entry)!r} has no readable provenance file {meta_path.name!r} beside it; import the "
                         "original checkpoint with `audit teachers import`") from None


def resolve_teacher_weights(path: Path, *, arch: str, dataset: str, cache_dir: Path | None = None,
                            expect_sha256: str | None = None) -> tuple[Path, str]:
    """The teacher-cache entry for ``path`` and its weights' sha256, checked against the study.

    A ``.safetensors`` entry is used as it is; any other file is imported into the cache first.
    ``expect_sha256`` (a study's recorded teacher) must match the entry's weights.
    """
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"--teacher-weights {str(path)!r} is not a file")
    entry = path if path.suffix == ENTRY_SUFFIX else import_teacher(path, arch=arch, dataset=dataset, cache_dir=cache_dir)
    meta = _entry_meta(entry)
    ident = meta.get("ident", {})
    for what, want in (("arch", arch), ("dataset", dataset)):
        if ident.get(what) != want:
            flag = "--teacher" if what == "arch" else "--dataset"
            raise AuditError(f"teacher weights {entry.name!r} are a {ident.get('arch')} for {ident.get('dataset')}, "
                             f"but the study's {flag} is {want}")
    sha = sha256_file(entry)
    if sha != meta.get("sha256"):
        raise AuditError(f"teacher weights {str(entry)!r} do not match the sha256 recorded beside them")
    if expect_sha256 is not None and sha != expect_sha256:
        raise AuditError(f"teacher weights {str(entry)!r} are not the ones this study used (sha256 {sha[:12]}..., "
                         f"recorded {expect_sha256[:12]}...)")
    return entry, sha


def imported_teacher(splits: Splits, entry: Path, *, arch: str, sha256: str | None = None) -> Teacher:
    """The entry as a frozen teacher on the splits' device, its accuracy measured on them."""
    info = splits.info
    entry, sha = resolve_teacher_weights(entry, arch=arch, dataset=info.name, expect_sha256=sha256)
    model = build_model(arch, in_channels=info.shape[0], num_classes=info.num_classes)
    model.load_state_dict(load_file(entry))
    model = model.to(splits.train.x.device).eval()
    meta = {**_entry_meta(entry), "entry": str(entry), "val_acc": accuracy(model, splits.val)}
    meta["test_acc"] = accuracy(model, splits.test) if splits.test is not None else None
    return Teacher(model, arch, meta, True)
