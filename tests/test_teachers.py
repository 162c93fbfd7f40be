"""Teacher cache: reuse, checksum-detected corruption and identity mismatch are retrained, never used."""
import json

import torch

from audit.engine.teachers import get_teacher
from audit.engine.train import Recipe

FAST = Recipe(epochs=1, batch_size=128, lr=0.1)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_cache_reuse_and_corruption(digits, tmp_path):
    first = get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path)
    assert not first.from_cache
    second = get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path)
    assert second.from_cache and _same(first.model, second.model)
    assert second.meta["ident"]["data_sha256"] == digits.checksum

    weights = next(tmp_path.glob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[-10] ^= 0xFF  # one flipped byte inside the tensor data
    weights.write_bytes(bytes(blob))
    third = get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path)
    assert not third.from_cache, "a corrupted cache entry must be retrained, not used"
    # Training is deterministic, so the retrained teacher equals the first one.
    assert _same(first.model, third.model)
    assert get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path).from_cache


def test_mismatched_identity_is_retrained(digits, tmp_path):
    get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path)
    meta_path = next(tmp_path.glob("*.json"))
    meta = json.loads(meta_path.read_text())
    meta["ident"]["seed"] = 99
    meta_path.write_text(json.dumps(meta))
    assert not get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path).from_cache


def test_other_seed_or_recipe_is_another_entry(digits, tmp_path):
    get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path)
    assert not get_teacher(digits, "resnet8", seed=1, recipe=FAST, cache_dir=tmp_path).from_cache
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_cache_holds_no_pickle(digits, tmp_path):
    get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path)
    from safetensors.torch import load_file

    tensors = load_file(next(tmp_path.glob("*.safetensors")))
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_a_teacher_another_process_is_training_is_waited_for_not_trained_again(digits, tmp_path):
    import shutil
    import threading
    import time

    from filelock import FileLock

    from audit.engine.teachers import entry

    made = get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=tmp_path / "elsewhere")
    cache = tmp_path / "shared"
    cache.mkdir()
    key = entry(digits, "resnet8", seed=0, recipe=FAST, cache_dir=cache)[2]
    got = {}
    with FileLock(cache / f".{key}.lock"):  # as another process holds it while it trains this teacher
        waiter = threading.Thread(target=lambda: got.update(t=get_teacher(digits, "resnet8", seed=0, recipe=FAST, cache_dir=cache)))
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive(), "get_teacher must wait for the process training the same teacher"
        for f in (tmp_path / "elsewhere").iterdir():  # that process writes its entry, then lets go
            shutil.copy(f, cache / f.name)
    waiter.join(timeout=60)
    assert got["t"].from_cache and _same(got["t"].model, made.model)
    assert len(list(cache.glob("*.safetensors"))) == 1
