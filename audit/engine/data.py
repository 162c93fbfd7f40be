"""Data sets as device-resident tensors, split into train / val / test.

The raw arrays come from ``audit.engine.datasets`` (the on-disk formats). The validation split is
carved from the training split, stratified, by the study's split seed; the test split is the data
set's official one (or, for ``digits``, a fixed stratified 20 %). A validation fraction of 0 keeps
the whole training split for training (an empty validation split): the as-published arm of
``audit reproduce`` tunes nothing, so it trains on every training image as the papers did.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from audit.engine.datasets import DatasetInfo, dataset_info, read_raw
from audit.errors import AuditError


@dataclass
class Split:
    x: torch.Tensor  # float32, normalised, N x C x H x W
    y: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Splits:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split | None  # None in the copy handed to search trials: they never see the test set
    checksum: str  # sha256 of the raw arrays, for provenance
    split_seed: int

    def without_test(self) -> "Splits":
        return Splits(self.info, self.train, self.val, None, self.checksum, self.split_seed)

    def to(self, device: torch.device | str) -> "Splits":
        test = self.test.to(device) if self.test is not None else None
        return Splits(self.info, self.train.to(device), self.val.to(device), test, self.checksum, self.split_seed)


def _checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _to_tensor(x: np.ndarray, info: DatasetInfo) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    if t.ndim == 3:  # N,H,W grey
        t = t[:, None]
    elif t.shape[-1] == info.shape[0] and t.shape[1] != info.shape[0]:  # N,H,W,C
        t = t.permute(0, 3, 1, 2)
    t = t.float().contiguous()
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (t - mean) / std


def stratified_val_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``fraction`` of every class goes to val, chosen by ``seed``; none at 0."""
    if fraction == 0:
        return np.arange(len(y)), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        val.append(idx[: max(1, round(fraction * len(idx)))])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


def load_splits(
    name: str,
    *,
    split_seed: int,
    val_fraction: float = 0.2,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: torch.device | str = "cpu",
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> Splits:
    """Load ``name`` once into tensors on ``device`` and split it.

    ``normalize`` (per-channel mean and std) replaces the data set's own constants, e.g. a claim
    source's when its released teacher is checked; ``Splits.info`` then carries them.
    """
    info = dataset_info(name)
    if not 0.0 <= val_fraction < 1.0:
        raise AuditError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if normalize is not None:
        mean, std = (tuple(float(v) for v in c) for c in normalize)
        if len(mean) != info.shape[0] or len(std) != info.shape[0] or min(std) <= 0:
            raise AuditError(f"normalisation for {name} needs {info.shape[0]} means and {info.shape[0]} positive stds, "
                             f"got {list(mean)} and {list(std)}")
        info = replace(info, mean=mean, std=std)
    path = Path(data_dir) if data_dir is not None else None
    if info.needs_dir:
        if path is None:
            raise AuditError(f"data set {name!r} needs --data-dir (a folder holding its files, or add --download)")
        if not download and not path.is_dir():
            raise AuditError(f"--data-dir {str(path)!r} is not a readable folder")
    x_tr, y_tr, x_te, y_te = read_raw(name, path, download)
    checksum = _checksum(x_tr, y_tr, x_te, y_te)
    tr_idx, va_idx = stratified_val_split(y_tr, val_fraction, split_seed)
    x_train = _to_tensor(x_tr, info)
    y_train = torch.from_numpy(y_tr.astype(np.int64))
    train = Split(x_train[tr_idx], y_train[tr_idx])
    val = Split(x_train[va_idx], y_train[va_idx])
    test = Split(_to_tensor(x_te, info), torch.from_numpy(y_te.astype(np.int64)))
    return Splits(info, train, val, test, checksum, split_seed).to(device)
