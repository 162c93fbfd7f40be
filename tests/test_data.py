"""Tests for audit.engine.data: loaders read small files written in the real on-disk formats."""
from __future__ import annotations

import builtins
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.engine.data import load_splits, stratified_val_split
from audit.engine.datasets import dataset_info, dataset_names
from audit.errors import AuditError

# --- writers for the real on-disk formats ------------------------------------------------------


def _cifar_images(n: int, start: int) -> np.ndarray:
    """N x 3 x 32 x 32 uint8 images, each unique: its index is written in pixel (0, 0) of R and G."""
    rng = np.random.default_rng(start)
    img = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    idx = np.arange(start, start + n)
    img[:, 0, 0, 0], img[:, 1, 0, 0] = idx // 256, idx % 256
    return img


def _write_pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f)


def _cifar_batch(img: np.ndarray, labels: np.ndarray, label_key: bytes, name: str) -> dict:
    # the real batches' keys and types: bytes keys, data uint8 N x 3072 (R plane, G plane, B plane)
    return {
        b"batch_label": name.encode(),
        label_key: [int(v) for v in labels],
        b"data": img.reshape(len(img), 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(img))],
    }


def write_cifar10(root: Path, per_class_per_batch: int = 2, test_per_class: int = 1) -> dict[str, np.ndarray]:
    base = root / "cifar-10-batches-py"
    imgs, labels = [], []
    start = 0
    for b in range(1, 6):
        y = np.tile(np.arange(10), per_class_per_batch)
        img = _cifar_images(len(y), start)
        start += len(y)
        _write_pickle(base / f"data_batch_{b}", _cifar_batch(img, y, b"labels", f"training batch {b} of 5"))
        imgs.append(img)
        labels.append(y)
    y_te = np.tile(np.arange(10), test_per_class)
    x_te = _cifar_images(len(y_te), 10_000)
    x_te[0] = 255  # a constant image: normalises to (1 - mean) / std
    _write_pickle(base / "test_batch", _cifar_batch(x_te, y_te, b"labels", "testing batch 1 of 1"))
    return {"x_train": np.concatenate(imgs), "y_train": np.concatenate(labels), "x_test": x_te, "y_test": y_te}


def write_cifar100(root: Path, train_per_class: int = 3) -> dict[str, np.ndarray]:
    base = root / "cifar-100-python"
    y = np.tile(np.arange(100), train_per_class)
    img = _cifar_images(len(y), 0)
    d = _cifar_batch(img, y, b"fine_labels", "training batch 1 of 1")
    d[b"coarse_labels"] = [int(v) // 5 for v in y]
    _write_pickle(base / "train", d)
    y_te = np.arange(100)
    x_te = _cifar_images(100, 50_000)
    x_te[0] = 0
    d = _cifar_batch(x_te, y_te, b"fine_labels", "testing batch 1 of 1")
    d[b"coarse_labels"] = [int(v) // 5 for v in y_te]
    _write_pickle(base / "test", d)
    return {"x_train": img, "y_train": y, "x_test": x_te, "y_test": y_te}


def _idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


def write_mnist(root: Path, folder: str | None = "MNIST", gz: bool = False, n_train: int = 50, n_test: int = 20) -> dict:
    """The four idx files in torchvision's ``<folder>/raw`` layout, or right in ``root`` (folder None)."""
    raw = root / folder / "raw" if folder else root
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    arrays["t10k-images-idx3-ubyte"][0] = 0  # constant black: normalises to -mean / std
    for name, a in arrays.items():
        data = _idx_bytes(a)
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)
    return arrays


def _norm(img_uint8: np.ndarray, name: str) -> torch.Tensor:
    info = dataset_info(name)
    t = torch.from_numpy(img_uint8).float() / 255.0
    return (t - torch.tensor(info.mean).view(-1, 1, 1)) / torch.tensor(info.std).view(-1, 1, 1)


# --- registry ----------------------------------------------------------------------------------


def test_registered_data_sets_and_infos():
    assert set(dataset_names()) >= {"digits", "cifar10", "cifar100", "mnist", "fashion-mnist"}
    c10, c100, mn, fm = (dataset_info(n) for n in ("cifar10", "cifar100", "mnist", "fashion-mnist"))
    assert (c10.shape, c10.num_classes, c10.hflip, c10.needs_dir) == ((3, 32, 32), 10, True, True)
    assert (c100.shape, c100.num_classes, c100.hflip) == ((3, 32, 32), 100, True)
    assert (mn.shape, mn.num_classes, mn.hflip, mn.mean, mn.std) == ((1, 28, 28), 10, False, (0.1307,), (0.3081,))
    assert (fm.shape, fm.hflip, fm.mean, fm.std) == ((1, 28, 28), False, (0.2860,), (0.3530,))
    assert c10.mean == (0.4914, 0.4822, 0.4465) and c100.std == (0.2673, 0.2564, 0.2762)


# --- CIFAR ---------------------------------------------------------------------------------------


def test_cifar10_shapes_values_and_split(tmp_path):
    raw = write_cifar10(tmp_path)
    s = load_splits("cifar10", split_seed=1, data_dir=tmp_path, val_fraction=0.2)
    n_train = len(raw["y_train"])  # 100
    assert len(s.train) + len(s.val) == n_train
    assert len(s.val) == 20 and len(s.test) == 10
    assert s.train.x.shape[1:] == (3, 32, 32) and s.train.x.dtype == torch.float32
    assert s.train.y.dtype == torch.int64
    assert set(s.val.y.tolist()) == set(range(10))  # stratified: every class in val
    assert torch.bincount(s.val.y, minlength=10).tolist() == [2] * 10
    # the R/G/B planes land in the right channels and pixels, normalised per channel
    assert torch.allclose(s.test.x, _norm(raw["x_test"], "cifar10"), atol=1e-6)
    info = dataset_info("cifar10")
    white = s.test.x[0].mean(dim=(1, 2))
    assert torch.allclose(white, (1 - torch.tensor(info.mean)) / torch.tensor(info.std), atol=1e-6)
    assert s.test.y.tolist() == raw["y_test"].tolist()


def _image_ids(x: torch.Tensor, name: str) -> list[int]:
    """Recover the index written in pixel (0, 0) by _cifar_images."""
    info = dataset_info(name)
    r = (x[:, 0, 0, 0] * info.std[0] + info.mean[0]) * 255
    g = (x[:, 1, 0, 0] * info.std[1] + info.mean[1]) * 255
    return (r.round().long() * 256 + g.round().long()).tolist()


def test_cifar10_val_split_disjoint_and_seeded(tmp_path):
    raw = write_cifar10(tmp_path)
    a = load_splits("cifar10", split_seed=3, data_dir=tmp_path)
    train_ids, val_ids = set(_image_ids(a.train.x, "cifar10")), set(_image_ids(a.val.x, "cifar10"))
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(len(raw["y_train"])))
    # labels travel with their images
    ids = _image_ids(a.val.x, "cifar10")
    assert a.val.y.tolist() == [int(raw["y_train"][i]) for i in ids]
    b = load_splits("cifar10", split_seed=3, data_dir=tmp_path)
    c = load_splits("cifar10", split_seed=4, data_dir=tmp_path)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert set(_image_ids(c.val.x, "cifar10")) != val_ids
    assert a.checksum == b.checksum == c.checksum  # a property of the data, not of the split


def test_checksum_changes_with_the_data(tmp_path):
    write_cifar10(tmp_path / "a")
    write_cifar10(tmp_path / "b")
    batch = tmp_path / "b" / "cifar-10-batches-py" / "data_batch_3"
    d = pickle.loads(batch.read_bytes())
    d[b"data"][0, 5] ^= 1
    _write_pickle(batch, d)
    ca = load_splits("cifar10", split_seed=0, data_dir=tmp_path / "a").checksum
    cb = load_splits("cifar10", split_seed=0, data_dir=tmp_path / "b").checksum
    assert len(ca) == 64 and ca != cb


def test_cifar100_fine_labels(tmp_path):
    raw = write_cifar100(tmp_path)
    s = load_splits("cifar100", split_seed=0, data_dir=tmp_path)
    assert len(s.train) + len(s.val) == 300 and len(s.test) == 100
    assert set(s.val.y.tolist()) == set(range(100))
    assert s.val.x.shape[1:] == (3, 32, 32)
    assert torch.allclose(s.test.x, _norm(raw["x_test"], "cifar100"), atol=1e-6)
    info = dataset_info("cifar100")
    black = s.test.x[0].mean(dim=(1, 2))
    assert torch.allclose(black, -torch.tensor(info.mean) / torch.tensor(info.std), atol=1e-6)


class _Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "builtins.exec"])
def test_pickle_with_forbidden_global_is_refused_and_not_run(tmp_path, how):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    d = pickle.loads(batch.read_bytes())
    if how == "os.system":
        d[b"data"] = _Evil(os.system, f"touch {marker}")
    else:
        d[b"data"] = _Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()")
    _write_pickle(batch, d)
    with pytest.raises(AuditError, match=how.split(".")[1]) as e:
        load_splits("cifar10", split_seed=0, data_dir=tmp_path)
    assert "data_batch_2" in str(e.value)
    assert not marker.exists()


def test_truncated_or_wrong_cifar_batch(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(AuditError, match="test_batch"):
        load_splits("cifar10", split_seed=0, data_dir=tmp_path)
    _write_pickle(batch, {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(AuditError, match="3072"):
        load_splits("cifar10", split_seed=0, data_dir=tmp_path)
    _write_pickle(batch, [1, 2, 3])
    with pytest.raises(AuditError, match="not a CIFAR batch"):
        load_splits("cifar10", split_seed=0, data_dir=tmp_path)


def test_missing_folder_or_file(tmp_path):
    with pytest.raises(AuditError, match="not a readable folder"):
        load_splits("cifar10", split_seed=0, data_dir=tmp_path / "nowhere")
    with pytest.raises(AuditError, match="--data-dir"):
        load_splits("mnist", split_seed=0)
    for name, expected in (("cifar10", "data_batch_1"), ("cifar100", "train"), ("mnist", "train-images-idx3-ubyte"),
                           ("fashion-mnist", "FashionMNIST")):
        with pytest.raises(AuditError, match="--download") as e:
            load_splits(name, split_seed=0, data_dir=tmp_path)
        msg = str(e.value)
        assert expected in msg and str(tmp_path) in msg and "\n" not in msg


def test_download_fetches_with_torchvision_then_reads_our_way(tmp_path, monkeypatch):
    from torchvision.datasets import utils as tv_utils

    calls = []

    def fake_download(url, root, filename=None, md5=None):
        calls.append((url, filename, md5))
        write_cifar10(Path(root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    s = load_splits("cifar10", split_seed=0, data_dir=tmp_path / "new", download=True)
    assert len(s.test) == 10
    assert calls and calls[0][1] == "cifar-10-python.tar.gz" and calls[0][2]  # torchvision's URL and md5
    load_splits("cifar10", split_seed=0, data_dir=tmp_path / "new", download=True)
    assert len(calls) == 1  # files present: nothing fetched again

    def failing(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", failing)
    with pytest.raises(AuditError, match="could not download CIFAR100.*network unreachable"):
        load_splits("cifar100", split_seed=0, data_dir=tmp_path / "other", download=True)


def test_mnist_download_uses_torchvision_class(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    seen = []

    class FakeFashion:
        def __init__(self, root, train=True, download=False):
            seen.append((root, download))
            write_mnist(Path(root), "FashionMNIST", gz=True)

    monkeypatch.setattr(tvd, "FashionMNIST", FakeFashion)
    s = load_splits("fashion-mnist", split_seed=0, data_dir=tmp_path, download=True)
    assert seen == [(str(tmp_path), True)] and len(s.test) == 20


# --- MNIST / Fashion-MNIST -------------------------------------------------------------------------


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_like_idx_files(tmp_path, name, folder, gz):
    raw = write_mnist(tmp_path, folder, gz=gz)
    s = load_splits(name, split_seed=0, data_dir=tmp_path)
    assert s.train.x.shape[1:] == (1, 28, 28) and len(s.train) + len(s.val) == 50
    assert len(s.val) == 10 and set(s.val.y.tolist()) == set(range(10))
    assert len(s.test) == 20 and s.test.y.tolist() == raw["t10k-labels-idx1-ubyte"].tolist()
    assert torch.allclose(s.test.x[:, 0], _norm(raw["t10k-images-idx3-ubyte"][:, None], name)[:, 0], atol=1e-6)
    info = dataset_info(name)
    assert s.test.x[0].mean().item() == pytest.approx(-info.mean[0] / info.std[0], abs=1e-6)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_files_right_in_the_data_dir(tmp_path, name):
    """Debian's dataset-fashion-mnist installs the four gzipped idx files in one folder, without
    torchvision's <Name>/raw layout: --data-dir pointing at that folder works."""
    raw = write_mnist(tmp_path, None, gz=True)
    s = load_splits(name, split_seed=0, data_dir=tmp_path)
    assert len(s.train) + len(s.val) == 50 and s.test.y.tolist() == raw["t10k-labels-idx1-ubyte"].tolist()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_package():
    s = load_splits("fashion-mnist", split_seed=0, data_dir="/usr/share/datasets/fashion-mnist")
    assert len(s.train) + len(s.val) == 60_000 and len(s.test) == 10_000
    assert sorted(set(s.test.y.tolist())) == list(range(10))


def test_plain_and_gzipped_mnist_agree(tmp_path):
    write_mnist(tmp_path / "plain")
    write_mnist(tmp_path / "gz", gz=True)
    a = load_splits("mnist", split_seed=5, data_dir=tmp_path / "plain")
    b = load_splits("mnist", split_seed=5, data_dir=tmp_path / "gz")
    assert a.checksum == b.checksum and torch.equal(a.train.x, b.train.x)


@pytest.mark.parametrize("damage", ["truncate", "magic", "header_only", "bad_gzip"])
def test_damaged_idx_file_names_the_file(tmp_path, damage):
    write_mnist(tmp_path, gz=damage == "bad_gzip")
    name = "t10k-images-idx3-ubyte"
    path = tmp_path / "MNIST" / "raw" / (name + (".gz" if damage == "bad_gzip" else ""))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-10])
    elif damage == "magic":
        path.write_bytes(bytes([0, 0, 0x08, 0x01]) + data[4:])  # a labels magic on an images file
    elif damage == "header_only":
        path.write_bytes(data[:6])
    else:
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AuditError, match=name):
        load_splits("mnist", split_seed=0, data_dir=tmp_path)


def test_mnist_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(49, np.uint8)))
    with pytest.raises(AuditError, match="49 labels for 50 images"):
        load_splits("mnist", split_seed=0, data_dir=tmp_path)


# --- digits and the split helper ---------------------------------------------------------------


def test_digits():
    s = load_splits("digits", split_seed=0)
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    assert len(s.test) == 899  # half the images: one test image is 0.11 points
    assert s.train.x.shape[1:] == (1, 8, 8)
    assert set(s.test.y.tolist()) == set(range(10)) == set(s.val.y.tolist())
    assert load_splits("digits", split_seed=0).checksum == s.checksum


def test_stratified_val_split_helper():
    y = np.repeat(np.arange(5), 20)
    tr, va = stratified_val_split(y, 0.25, seed=1)
    assert len(tr) + len(va) == 100 and not set(tr) & set(va)
    assert np.bincount(y[va]).tolist() == [5] * 5
    tr2, va2 = stratified_val_split(y, 0.25, seed=1)
    _, va3 = stratified_val_split(y, 0.25, seed=2)
    assert np.array_equal(va, va2) and not np.array_equal(va, va3)
