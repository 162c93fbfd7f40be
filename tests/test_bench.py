"""audit bench and the engine's speed settings: the benchmark's output, the teacher-output cache
(identical losses, and the teacher really skipped), GPU settings that are no-ops on the CPU, and
the channels-last layout (float-precision differences only)."""
from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from audit.cli import main
from audit.engine import bench
from audit.engine.models import build_model
from audit.engine.teacher_cache import TeacherCache
from audit.engine.train import Accel, Recipe, train_student
from audit.study import Study

RECIPE = Recipe(epochs=2, batch_size=128)


@pytest.fixture(scope="module")
def small(digits):
    """A quarter of digits: enough batches for the cache to be filled, then reused."""
    from audit.engine.data import Split, Splits

    cut = lambda s, n: Split(s.x[:n], s.y[:n])  # noqa: E731
    return Splits(digits.info, cut(digits.train, 512), cut(digits.val, 128), cut(digits.test, 128), digits.checksum, 0)


def _teacher(arch: str = "resnet14"):
    torch.manual_seed(123)
    return build_model(arch, in_channels=1, num_classes=10).eval()


def _count_calls(model: torch.nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_bench_tiny_prints_both_loops_and_the_speedup_line(capsys):
    assert main(["bench", "--steps", "2", "--repeats", "1", "--batch-size", "16", "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    text = "\n".join(out)
    for case in ("case cifar", "case digits"):
        assert case in text
    assert text.count("reference (DataLoader + PIL transforms):") == 2
    assert text.count("ours (audit engine):") == 2
    assert len(re.findall(r"ratio ours / reference: \d+\.\d\dx", text)) == 2
    assert re.fullmatch(r"speedup vs reference: \d+\.\d\dx", out[-1])


def test_bench_rejects_cuda_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["bench", "--device", "cuda", "--steps", "1", "--repeats", "1"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("method,config", [
    ("kd", {"temperature": 4.0, "alpha": 0.9}),
    ("feature_kd", {"alpha": 0.5, "beta": 10.0, "hint_stage": "middle"}),
    ("uda", {}),  # its strong view is a new tensor: that call must not be served from the cache
])
def test_teacher_cache_gives_identical_numbers_and_skips_the_teacher(small, method, config):
    config = {**config, "strength": 0.0}
    results, calls = {}, {}
    for cache in (True, False):
        teacher = _teacher()
        calls[cache] = _count_calls(teacher)
        results[cache], _ = train_student(method=method, config=config, splits=small, student_arch="resnet8", teacher=teacher,
                                recipe=RECIPE, seed=5, accel=Accel(teacher_cache=cache))
    on, off = results[True], results[False]
    assert on.status == off.status == "ok"
    assert on.train_loss == off.train_loss and on.val_acc == off.val_acc and on.test_acc == off.test_acc
    assert on.flops == off.flops  # the first step runs the teacher either way: the recorded compute is the same
    steps_per_epoch = len(small.train) // RECIPE.batch_size
    probe = 1  # the shape probe when the run starts
    per_step = 2 if method == "uda" else 1
    assert calls[False][0] == probe + per_step * RECIPE.epochs * steps_per_epoch
    # With the cache the clean view runs only in the first epoch; UDA's strong view runs every step.
    clean = steps_per_epoch
    strong = RECIPE.epochs * steps_per_epoch if method == "uda" else 0
    assert calls[True][0] == probe + clean + strong


def test_teacher_cache_is_not_used_with_augmentation(small):
    teacher = _teacher()
    calls = _count_calls(teacher)
    r, _ = train_student(method="kd", config={"strength": 0.3}, splits=small, student_arch="resnet8", teacher=teacher,
               recipe=Recipe(epochs=2, batch_size=128), seed=0)
    assert r.status == "ok"
    assert calls[0] == 1 + 2 * (len(small.train) // 128)


def test_teacher_outputs_do_not_depend_on_the_rest_of_the_batch(digits):
    """What makes the cache exact: a frozen network's output for a sample is the same in any batch."""
    teacher = _teacher("resnet20")
    x = digits.train.x
    with torch.no_grad():
        whole_logits, whole = teacher(x[:256])
        idx = torch.randperm(256, generator=torch.Generator().manual_seed(0))[:64]
        part_logits, part = teacher(x[:256][idx])
    assert torch.equal(whole_logits[idx], part_logits)
    for a, b in zip(whole.post, part.post):
        assert torch.equal(a[idx], b)


def test_teacher_cache_serves_only_the_bound_batch_and_respects_its_size_limit():
    teacher = _teacher()
    x = torch.randn(8, 1, 8, 8)
    idx = torch.arange(4)

    def compute(inp):
        calls.append(inp)
        with torch.no_grad():
            return teacher(inp)

    calls: list[torch.Tensor] = []
    cache = TeacherCache(num_samples=8)
    batch = x[idx]
    cache.bind(batch, idx, idx)
    first = cache.forward(teacher, batch, compute)
    again = cache.forward(teacher, batch, compute)
    assert len(calls) == 1 and torch.equal(first[0], again[0])
    cache.forward(teacher, batch.clone(), compute)  # equal values, another tensor: not the bound batch
    assert len(calls) == 2
    cache.unbind()
    cache.forward(teacher, batch, compute)
    assert len(calls) == 3

    calls.clear()
    tiny = TeacherCache(num_samples=8, max_bytes=16)  # too small for one sample's features
    tiny.bind(batch, idx, idx)
    tiny.forward(teacher, batch, compute)
    tiny.forward(teacher, batch, compute)
    assert len(calls) == 2


def test_gpu_settings_are_no_ops_on_the_cpu(small):
    assert Accel(bf16=True, compile=True).on(torch.device("cpu")) == Accel()
    teacher = _teacher()
    config = {"strength": 0.4, "temperature": 4.0, "alpha": 0.5}
    gpu, student = train_student(method="kd", config=config, splits=small, student_arch="resnet8", teacher=teacher, recipe=RECIPE,
                       seed=2, accel=Accel(bf16=True, compile=True))
    plain, _ = train_student(method="kd", config=config, splits=small, student_arch="resnet8", teacher=teacher, recipe=RECIPE,
                   seed=2, accel=Accel())
    assert gpu.train_loss == plain.train_loss and gpu.val_acc == plain.val_acc and gpu.flops == plain.flops
    assert getattr(student, "_compiled_call_impl", None) is None


def test_channels_last_changes_numbers_only_at_float_precision(small):
    """NHWC convolutions sum in another order than NCHW ones: the same step, not the same bits."""
    from methods.base import kd_divergence

    teacher = _teacher("resnet20")
    torch.manual_seed(0)
    student = build_model("resnet8", in_channels=1, num_classes=10)
    x, y = small.train.x[:64], small.train.y[:64]
    out = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        s, t = copy.deepcopy(student).to(memory_format=fmt), copy.deepcopy(teacher).to(memory_format=fmt)
        with torch.no_grad():
            t_logits, t_feats = t(x.contiguous(memory_format=fmt))
        logits, feats = s(x.contiguous(memory_format=fmt))
        loss = 0.5 * F.cross_entropy(logits, y) + 0.5 * kd_divergence(logits, t_logits, 4.0) + F.mse_loss(feats.post[2], t_feats.post[2])
        loss.backward()
        out[fmt] = (loss.detach(), [p.grad.clone() for p in s.parameters()])
    (l0, g0), (l1, g1) = out.values()
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # A whole run: each layout deterministic, and both train alike.
    config = {"strength": 0.3, "temperature": 4.0, "alpha": 0.9}
    runs = [train_student(method="kd", config=config, splits=small, student_arch="resnet8", teacher=teacher, recipe=RECIPE, seed=4,
                accel=Accel(channels_last=cl))[0] for cl in (True, False, True)]
    assert runs[0].train_loss == runs[2].train_loss
    assert runs[0].train_loss == pytest.approx(runs[1].train_loss, rel=1e-3)


def test_main_job_split_from_a_study_folder(tmp_path):
    study = Study(name="s", methods=["feature_kd"], trials=2, seeds=[1, 2])
    study.write(tmp_path / "study.toml")
    (tmp_path / "timings.json").write_text(json.dumps({"teacher_s": 10.0, "search_s": 60.0, "confirm_s": 20.0, "total_s": 90.0}))
    (tmp_path / "teacher.json").write_text(json.dumps({"created": "2030-01-01T00:00:00Z", "wall_s": 9.0}))
    rows = [("search", "nokd", 50.0, None), ("search", "kd", 60.0, None),
            ("confirm", "feature_kd", 15.0, 97.0), ("confirm", "feature_kd", 15.0, 99.0)]
    pd.DataFrame([{"phase": p, "method": m, "wall_s": w, "test_acc_last": a, "status": "ok"} for p, m, w, a in rows]).to_csv(
        tmp_path / "results.csv", index=False)
    s = bench.split_study(tmp_path, wall_s=100.0, started_at=0.0)
    assert s.concurrency >= 1
    assert s.teacher_train_s == 9.0
    assert s.search_train_s == pytest.approx(min(60.0, 110.0 / s.concurrency))
    assert s.confirm_train_s == pytest.approx(min(20.0, 30.0 / s.concurrency))
    assert s.orchestration_s == pytest.approx(100.0 - s.training_s)
    assert s.accuracies["feature_kd"][0] == pytest.approx(98.0)
    lines = "\n".join(bench.job_report(s))
    assert "main job wall time: 100.0s" in lines and "training share" in lines and "feature_kd: 98.00" in lines
    # A teacher created before the run started came from the cache: no training time.
    assert bench.split_study(tmp_path, wall_s=100.0, started_at=2e9).teacher_train_s == 0.0


def test_accuracy_check_compares_each_setting_with_the_baseline(capsys, teacher_cache):
    code = main(["bench", "--case", "none", "--accuracy", "--acc-epochs", "1", "--acc-seeds", "2",
                 "--cache-dir", str(teacher_cache)])
    out = capsys.readouterr().out
    assert code == 0
    runs = {m.group(1): [float(v) for v in m.group(2).split()] for m in re.finditer(r"^  (.+?): ([\d. ]+)$", out, re.M)}
    base, nhwc = runs["float32 NCHW (baseline)"], runs["channels-last"]
    assert len(base) == len(nhwc) == 2 and all(0 < v <= 100 for v in base + nhwc)
    # Same seeds, float-precision differences only: one seed's accuracy moves by a few images at most.
    assert all(abs(a - b) < 2.0 for a, b in zip(base, nhwc))
    assert re.search(r"channels-last +[\d.]+ ± [\d.]+ +(diff [+-][\d.]+ \(95% CI .* Welch p = [\d.]+|identical to the baseline): (same within noise|DIFFERS)", out)
    assert out.count("CUDA only: not run on cpu") == 2


def test_accuracy_check_needs_two_seeds(capsys):
    assert main(["bench", "--case", "none", "--accuracy", "--acc-seeds", "1"]) == 2
    assert "--acc-seeds must be at least 2" in capsys.readouterr().err
