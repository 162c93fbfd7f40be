"""The data sets and their on-disk formats, read into raw arrays (numpy; no torch).

``digits`` ships inside scikit-learn. CIFAR-10/100 are torchvision's python batches, read with an
unpickler that accepts only the arrays a batch holds; MNIST and Fashion-MNIST are idx files
(plain or gzipped). torchvision is used only to download.
"""
from __future__ import annotations

import gzip
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audit.errors import AuditError, unknown

# digits has no official test split; this seed fixes one for every study. Half the images are test
# images: 899 of them make one image 0.11 accuracy points (the seed spread of a confirmed run
# shrinks with it, which is what gives the default audit its power), and a student trained on
# the other half has room below its teacher (README, "The default audit").
DIGITS_TEST_SEED = 20150309
DIGITS_TEST_FRACTION = 0.5


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool  # whether a horizontal flip preserves the label
    source: str
    needs_dir: bool


RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train uint8/float NHWC-or-NCHW, y_train, x_test, y_test
_LOADERS: dict[str, tuple[DatasetInfo, Callable[[Path | None, bool], RawArrays]]] = {}


def register_dataset(info: DatasetInfo):
    def wrap(fn: Callable[[Path | None, bool], RawArrays]):
        _LOADERS[info.name] = (info, fn)
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def dataset_info(name: str) -> DatasetInfo:
    if name not in _LOADERS:
        raise unknown("data set", name, dataset_names())
    return _LOADERS[name][0]


@register_dataset(
    DatasetInfo("digits", (1, 8, 8), 10, (0.3059,), (0.3722,), False, "scikit-learn load_digits (UCI optdigits, 1,797 images)", False)
)
def _load_digits(data_dir: Path | None, download: bool) -> RawArrays:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # N,1,8,8 in [0,1]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, stratify=y,
                                              random_state=DIGITS_TEST_SEED)
    return x_tr, y_tr, x_te, y_te


# --- torchvision data sets -------------------------------------------------------------------
# torchvision only fetches the files; our own code reads them. CIFAR's batches are pickles, and
# torchvision's CIFAR classes open them with plain pickle.load, which runs whatever the file names.


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR's python batches hold: dicts, lists, bytes and numpy arrays.

    Any other global (os.system, builtins.eval, ...) is refused before it can be called.
    """

    # numpy 1.x pickles name numpy.core, numpy 2.x numpy._core; both mean the same function, taken
    # from ndarray.__reduce__ so that neither deprecated module path has to be imported.
    _RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # as the CIFAR authors' own loader: keys are bytes
        self._path = path

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise AuditError(
                f"refusing to load {str(self._path)!r}: it references {module}.{name}, which a CIFAR batch never does"
            ) from None


def _missing(path: Path, what: str) -> AuditError:
    return AuditError(
        f"{what} file not found: {str(path)!r} (add --download to fetch it, or point --data-dir at the folder that holds it)"
    )


def _need_dir(data_dir: Path | None, name: str) -> Path:
    if data_dir is None:  # load_splits checks this first; kept for direct callers
        raise AuditError(f"data set {name!r} needs --data-dir")
    return data_dir


def _unpickle_batch(path: Path) -> dict[str, object]:
    """One CIFAR python batch, as a dict with str keys."""
    if not path.is_file():
        raise _missing(path, "CIFAR")
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, path).load()
    except AuditError:
        raise
    except Exception as e:  # truncated or garbled: pickle raises many types
        raise AuditError(f"{str(path)!r} is not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise AuditError(f"{str(path)!r} is not a CIFAR batch (holds {type(obj).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_arrays(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images N x 32 x 32 x 3 uint8 and labels int64 from one batch file."""
    d = _unpickle_batch(path)
    data, labels = d.get("data"), d.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise AuditError(f"{str(path)!r}: 'data' is not a uint8 N x 3072 array")
    if labels is None:
        raise AuditError(f"{str(path)!r}: no {label_key!r} entry")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (data.shape[0],) or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        raise AuditError(f"{str(path)!r}: {label_key!r} must hold {data.shape[0]} labels in [0, {num_classes})")
    # rows are 1024 red, 1024 green, 1024 blue values, each plane row-major
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y


def _download_archive(cls_name: str, root: Path) -> None:
    """Fetch and unpack a CIFAR archive with torchvision's URL and md5, without unpickling it."""
    import torchvision.datasets as tvd
    from torchvision.datasets import utils as tv_utils

    cls = getattr(tvd, cls_name)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tv_utils.download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as e:  # network, disk or checksum failure
        raise AuditError(f"could not download {cls_name} into {str(root)!r}: {e}") from None


def _load_cifar(root: Path | None, download: bool, folder: str, train: list[str], test: str, label_key: str,
                num_classes: int, cls_name: str) -> RawArrays:
    root = _need_dir(root, cls_name)
    base = root / folder
    files = [base / f for f in [*train, test]]
    if download and not all(f.is_file() for f in files):
        _download_archive(cls_name, root)
    parts = [_cifar_arrays(f, label_key, num_classes) for f in files]
    x_tr = np.concatenate([p[0] for p in parts[:-1]])
    y_tr = np.concatenate([p[1] for p in parts[:-1]])
    return x_tr, y_tr, parts[-1][0], parts[-1][1]


@register_dataset(
    DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                "torchvision CIFAR10 files (cifar-10-batches-py: 50,000 train / 10,000 test)", True)
)
def _load_cifar10(data_dir: Path | None, download: bool) -> RawArrays:
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    return _load_cifar(data_dir, download, "cifar-10-batches-py", batches, "test_batch", "labels", 10, "CIFAR10")


@register_dataset(
    DatasetInfo("cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
                "torchvision CIFAR100 files (cifar-100-python, fine labels: 50,000 train / 10,000 test)", True)
)
def _load_cifar100(data_dir: Path | None, download: bool) -> RawArrays:
    return _load_cifar(data_dir, download, "cifar-100-python", ["train"], "test", "fine_labels", 100, "CIFAR100")


_IDX_UBYTE = 0x08  # the idx type code for unsigned bytes, the only one MNIST uses


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file (plain, or ``path`` + ``.gz``) as a uint8 array with ``ndim`` dimensions."""
    gz = path.with_name(path.name + ".gz")
    if path.is_file():
        src, opener = path, open
    elif gz.is_file():
        src, opener = gz, gzip.open
    else:
        raise _missing(path, "idx")
    try:
        with opener(src, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise AuditError(f"cannot read {str(src)!r}: {e}") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise AuditError(f"{str(src)!r} is truncated: {len(raw)} bytes, shorter than its idx header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != (_IDX_UBYTE << 8 | ndim):
        raise AuditError(f"{str(src)!r} is not a {ndim}-d unsigned-byte idx file (magic {magic:#010x}, "
                         f"expected {_IDX_UBYTE << 8 | ndim:#010x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise AuditError(f"{str(src)!r} is truncated or padded: header says {shape}, "
                         f"so {header + size} bytes, but the file has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable, for torch


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _has_idx(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in _IDX_FILES)


def _load_mnist_like(root: Path | None, download: bool, cls_name: str, info_name: str) -> RawArrays:
    root = _need_dir(root, info_name)
    # The four idx files right in --data-dir (as Debian's dataset-fashion-mnist installs them in
    # /usr/share/datasets/fashion-mnist), else the layout torchvision writes.
    raw = root if _has_idx(root) else root / cls_name / "raw"
    if download and not _has_idx(raw):
        import torchvision.datasets as tvd

        try:  # torchvision's MNIST reader is pickle-free, so letting its constructor run is harmless
            getattr(tvd, cls_name)(str(root), train=True, download=True)
        except Exception as e:
            raise AuditError(f"could not download {cls_name} into {str(root)!r}: {e}") from None
    h, w = dataset_info(info_name).shape[1:]
    arrays: list[np.ndarray] = []
    for images, labels in (_IDX_FILES[:2], _IDX_FILES[2:]):
        x, y = _read_idx(raw / images, 3), _read_idx(raw / labels, 1)
        if x.shape[1:] != (h, w):
            raise AuditError(f"{str(raw / images)!r}: images are {x.shape[1]} x {x.shape[2]}, expected {h} x {w}")
        if len(x) != len(y):
            raise AuditError(f"{str(raw / labels)!r}: {len(y)} labels for {len(x)} images")
        if y.size and y.max() >= 10:
            raise AuditError(f"{str(raw / labels)!r}: labels must be in [0, 10)")
        arrays += [x, y.astype(np.int64)]
    return arrays[0], arrays[1], arrays[2], arrays[3]


@register_dataset(
    DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,), False,
                "MNIST idx files (in --data-dir or its MNIST/raw: 60,000 train / 10,000 test)", True)
)
def _load_mnist(data_dir: Path | None, download: bool) -> RawArrays:
    return _load_mnist_like(data_dir, download, "MNIST", "mnist")


@register_dataset(
    DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,), False,
                "Fashion-MNIST idx files (in --data-dir or its FashionMNIST/raw: 60,000 train / 10,000 test)", True)
)
def _load_fashion_mnist(data_dir: Path | None, download: bool) -> RawArrays:
    return _load_mnist_like(data_dir, download, "FashionMNIST", "fashion-mnist")


def read_raw(name: str, data_dir: Path | None, download: bool) -> RawArrays:
    """(x_train, y_train, x_test, y_test) of data set ``name`` as stored (uint8 or float)."""
    dataset_info(name)  # an unknown name is one clear line
    return _LOADERS[name][1](data_dir, download)
