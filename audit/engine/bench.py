"""``audit bench``: our engine's KD training throughput against a reference loop, side by side.

The reference is written the way the seed survey's code and most KD repositories train: a
torchvision ``DataLoader`` over a data set of PIL images with per-sample transforms (random crop
with padding, horizontal flip, ``ToTensor``, ``Normalize``), the teacher run separately in eval
mode each step, the student stepped with SGD on the KD loss. It is given the stronger of the
usual teacher calls (under ``no_grad``; the survey's own code builds the teacher's graph too).

Both loops train the same teacher/student pair on the same images, batch size, threads and
optimiser in one process; repeats alternate which loop goes first, and the medians are compared.
Our engine is timed through ``audit.engine.train.run`` itself (model building, the FLOP count on the
first step and a small validation pass included), i.e. as a trial pays for it.

``main_job`` runs ``audit run`` in a fresh process and splits its wall time into teacher,
search, confirmation and orchestration from the study folder's ``timings.json`` and ``results.csv``.
"""
from __future__ import annotations

import calendar
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audit.engine.data import Split, Splits, _to_tensor
from audit.engine.datasets import DatasetInfo, dataset_info
from audit.engine.models import build_model
from audit.engine.train import Accel, Recipe, train_student
from methods.base import kd_divergence
from methods.catalogue import CLASSICAL, MAIN_JOB_METHOD

KD_CONFIG = {"temperature": 4.0, "alpha": 0.9}


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    teacher: str
    student: str
    info: DatasetInfo  # shape, classes, mean/std and whether flips are allowed
    padding: int  # of the reference's random crop
    strength: float  # of our augmentation: translations up to padding / side, as the crop's


def cases() -> dict[str, Case]:
    cifar, digits = dataset_info("cifar10"), dataset_info("digits")
    return {
        # strength 0.5 translates by up to 12.5 % of the side, as a 4-pixel crop padding at 32 does.
        "cifar": Case("cifar", "CIFAR-shaped 3x32x32 (synthetic)", "resnet26", "resnet8", cifar, 4, 0.5),
        "digits": Case("digits", "digits 1x8x8, resnet20 -> resnet8", "resnet20", "resnet8", digits, 1, 0.5),
    }


def images_for(case: Case, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images N x H x W x C and labels: digits' own pixels, random ones for CIFAR."""
    c, h, w = case.info.shape
    rng = np.random.default_rng(seed)
    if case.key == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        pick = rng.choice(len(d.target), size=n, replace=n > len(d.target))
        x = np.round(d.images[pick] / 16.0 * 255.0).astype(np.uint8)[..., None]
        return x, d.target[pick].astype(np.int64)
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8), rng.integers(0, case.info.num_classes, size=n)


def _splits(case: Case, x: np.ndarray, y: np.ndarray) -> Splits:
    """Our engine's view of the same images: normalised float tensors, resident, NCHW (as a study loads them)."""
    train = Split(_to_tensor(x, case.info), torch.from_numpy(y))
    val = Split(train.x[:64], train.y[:64])  # the per-epoch validation every trial pays, kept small
    return Splits(case.info, train, val, None, "", 0)


class _PILImages(torch.utils.data.Dataset):
    """Like torchvision's CIFAR10: uint8 arrays, one ``Image.fromarray`` and transform per item."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable) -> None:
        self.x = x[..., 0] if x.shape[-1] == 1 else x  # PIL's grey images are H x W
        self.y, self.transform = y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def reference_loop(case: Case, x: np.ndarray, y: np.ndarray, teacher: torch.nn.Module, recipe: Recipe,
                   workers: int, device: torch.device, seed: int = 0) -> int:
    """One epoch of the reference KD loop over ``x``; returns the images trained on."""
    from torchvision import transforms

    steps = [transforms.RandomCrop(case.info.shape[1], padding=case.padding)]
    if case.info.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(case.info.mean, case.info.std)]
    loader = torch.utils.data.DataLoader(
        _PILImages(x, y, transforms.Compose(steps)), batch_size=recipe.batch_size, shuffle=True,
        num_workers=workers, drop_last=True, generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda",
    )
    torch.manual_seed(seed)
    student = build_model(case.student, in_channels=case.info.shape[0], num_classes=case.info.num_classes).to(device)
    opt = torch.optim.SGD(student.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                          weight_decay=recipe.weight_decay)
    teacher.eval()
    student.train()
    alpha, temperature = KD_CONFIG["alpha"], KD_CONFIG["temperature"]
    seen, loss_sum = 0, 0.0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.no_grad():
            t_logits, _ = teacher(xb)
        logits, _ = student(xb)
        loss = (1 - alpha) * F.cross_entropy(logits, yb) + alpha * kd_divergence(logits, t_logits, temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item()  # the running loss such loops print
        seen += len(yb)
    return seen


def engine_loop(case: Case, x: np.ndarray, y: np.ndarray, teacher: torch.nn.Module, recipe: Recipe,
                accel: Accel, device: torch.device, seed: int = 0) -> int:
    """One epoch of our engine (``audit.engine.train.train_student``, classical KD) over ``x``; returns the images trained on."""
    splits = _splits(case, x, y).to(device)  # resident on the device, as a study loads them
    result, _ = train_student(method=CLASSICAL, config={**KD_CONFIG, "strength": case.strength}, splits=splits,
                    student_arch=case.student, teacher=teacher, recipe=recipe, seed=seed, accel=accel)
    if result.status != "ok":
        raise RuntimeError(f"engine run failed: {result.reason}")
    return result.images


@dataclass
class Measured:
    case: Case
    reference: list[float]  # images/s per repeat
    ours: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.reference)


def measure(case: Case, *, steps: int, repeats: int, batch_size: int, workers: int, accel: Accel,
            device: torch.device = torch.device("cpu"), log: Callable[[str], None] = print) -> Measured:
    recipe = Recipe(epochs=1, batch_size=batch_size, lr=0.05)
    x, y = images_for(case, steps * batch_size)
    torch.manual_seed(1234)
    teacher = build_model(case.teacher, in_channels=case.info.shape[0], num_classes=case.info.num_classes).to(device).eval()
    loops = {
        "reference": lambda: reference_loop(case, x, y, teacher, recipe, workers, device),
        "ours": lambda: engine_loop(case, x, y, teacher, recipe, accel, device),
    }
    for fn in loops.values():  # warm-up: allocator, oneDNN primitives, imports
        _images_per_s(fn)
    rates: dict[str, list[float]] = {k: [] for k in loops}
    for r in range(repeats):
        for name in (("reference", "ours") if r % 2 == 0 else ("ours", "reference")):
            rates[name].append(_images_per_s(loops[name]))
        log(f"  repeat {r + 1}/{repeats}: reference {rates['reference'][-1]:.1f} img/s, ours {rates['ours'][-1]:.1f} img/s")
    return Measured(case, rates["reference"], rates["ours"])


def _images_per_s(fn: Callable[[], int]) -> float:
    _sync()
    start = time.perf_counter()
    images = fn()
    _sync()  # a GPU's queued work belongs to the loop that queued it
    return images / (time.perf_counter() - start)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def report(m: Measured) -> list[str]:
    fmt = lambda v: " ".join(f"{r:.1f}" for r in v)  # noqa: E731
    return [
        f"  reference (DataLoader + PIL transforms): {statistics.median(m.reference):8.1f} img/s  (median; runs {fmt(m.reference)})",
        f"  ours (audit engine):                     {statistics.median(m.ours):8.1f} img/s  (median; runs {fmt(m.ours)})",
        f"  ratio ours / reference: {m.ratio:.2f}x",
    ]


# --- the main job ----------------------------------------------------------------------------


@dataclass
class JobSplit:
    wall_s: float  # the whole `audit run` process, start-up and report included
    teacher_s: float
    teacher_train_s: float  # training inside teacher_s (0 when it came from the cache)
    search_s: float
    confirm_s: float
    search_train_s: float  # sum of trial wall_s / concurrency: the search's training time
    confirm_train_s: float
    concurrency: int
    accuracies: dict[str, tuple[float, float]]  # method -> (mean, std) confirmed test accuracy

    @property
    def training_s(self) -> float:
        return self.teacher_train_s + self.search_train_s + self.confirm_train_s

    @property
    def orchestration_s(self) -> float:
        return self.wall_s - self.training_s


def main_job(out: Path, *, trials: int, seeds: int | None, epochs: int | None, cache_dir: Path | None,
             extra: list[str] | None = None) -> JobSplit:
    """Run the README's main job (``audit run --method feature_kd``) on digits in a fresh process and split its wall time."""
    name = f"bench-main-job-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "audit.cli", "run", "--method", MAIN_JOB_METHOD, "--trials", str(trials),
           "--out", str(out), "--name", name, *(extra or [])]
    if seeds is not None:
        cmd += ["--seeds", str(seeds)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    started_at, start = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"audit run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return split_study(out / name, wall, started_at)


def split_study(study_dir: Path, wall_s: float, started_at: float | None = None) -> JobSplit:
    """The split of a finished study; ``started_at`` (epoch seconds) tells a teacher trained by
    this run from one loaded from the cache."""
    import pandas as pd

    from audit.study import Study

    timings = json.loads((study_dir / "timings.json").read_text())
    study = Study.read(study_dir / "study.toml")
    if study.backend == "local":
        concurrency = 1
    else:  # as audit.search.loop sizes it on this machine
        concurrency = study.max_concurrent or max(1, int((os.cpu_count() or 1) // study.cpus_per_trial))
    results = pd.read_csv(study_dir / "results.csv")
    teacher_meta = study_dir / "teacher.json"
    teacher_train = 0.0
    if teacher_meta.exists() and started_at is not None:
        meta = json.loads(teacher_meta.read_text())
        created = calendar.timegm(time.strptime(meta["created"], "%Y-%m-%dT%H:%M:%SZ"))
        if created >= int(started_at):  # trained by this run, not loaded from the cache
            teacher_train = min(float(meta["wall_s"]), timings["teacher_s"])
    train_s = lambda phase, span: min(span, results.loc[results.phase == phase, "wall_s"].sum() / concurrency)  # noqa: E731
    confirmed = results[(results.phase == "confirm") & (results.status == "ok")]
    acc = {m: (float(g.test_acc_last.mean()), float(g.test_acc_last.std(ddof=1)) if len(g) > 1 else 0.0)
           for m, g in confirmed.groupby("method")}
    return JobSplit(
        wall_s=wall_s, teacher_s=timings["teacher_s"], teacher_train_s=teacher_train,
        search_s=timings["search_s"], confirm_s=timings["confirm_s"],
        search_train_s=train_s("search", timings["search_s"]), confirm_train_s=train_s("confirm", timings["confirm_s"]),
        concurrency=concurrency, accuracies=acc,
    )


def job_report(s: JobSplit) -> list[str]:
    pct = lambda v: f"{100.0 * v / s.wall_s:5.1f}%"  # noqa: E731
    lines = [
        f"main job wall time: {s.wall_s:.1f}s ({s.wall_s / 60:.2f} min), {s.concurrency} concurrent trials",
        f"  teacher        {s.teacher_s:8.1f}s  (training {s.teacher_train_s:.1f}s)",
        f"  search         {s.search_s:8.1f}s  (training {s.search_train_s:.1f}s = sum of trial wall_s / {s.concurrency})",
        f"  confirmation   {s.confirm_s:8.1f}s  (training {s.confirm_train_s:.1f}s)",
        f"  orchestration  {s.orchestration_s:8.1f}s  {pct(s.orchestration_s)}  (start-up, Ray, Optuna, journal, report)",
        f"  training share {pct(s.training_s)} of the wall time",
    ]
    for m, (mean, std) in sorted(s.accuracies.items()):
        lines.append(f"  confirmed test accuracy {m}: {mean:.2f} ± {std:.2f}")
    return lines


# --- speed settings do not trade accuracy ----------------------------------------------------

# Each against the plain float32 NCHW engine; the teacher cache is off throughout (it is bitwise exact).
ACCURACY_SETTINGS = {
    "float32 NCHW (baseline)": Accel(channels_last=False, teacher_cache=False),
    "channels-last": Accel(channels_last=True, teacher_cache=False),
    "bf16 autocast": Accel(channels_last=True, bf16=True, teacher_cache=False),
    "torch.compile": Accel(channels_last=True, compile=True, teacher_cache=False),
}


@dataclass
class AccuracyRow:
    setting: str
    accel: Accel
    runs: list[float]  # test accuracy at the last epoch, one per seed; empty when not run
    note: str = ""  # why it was not run, or the comparison with the baseline


def accuracy_check(*, epochs: int, seeds: int, device: torch.device, cache_dir: Path | None,
                   log: Callable[[str], None] = print) -> list[AccuracyRow]:
    """Train the default digits pair with ``kd`` under each speed setting over the same seeds;
    compare each setting's test accuracies with the baseline's (Welch). Settings that act only
    on CUDA are listed as not run elsewhere."""
    from audit.engine.data import load_splits
    from audit.engine.teachers import get_teacher
    from audit.judge.relative import compare_methods
    from audit.study import DEFAULT_RECIPE

    splits = load_splits("digits", split_seed=0, device=str(device))
    teacher = get_teacher(splits, "resnet20", cache_dir=cache_dir).model
    recipe = dataclasses.replace(DEFAULT_RECIPE, epochs=epochs)
    rows = []
    for setting, accel in ACCURACY_SETTINGS.items():
        if accel.on(device) != accel:
            rows.append(AccuracyRow(setting, accel, [], f"CUDA only: not run on {device.type}"))
            continue
        runs = []
        for seed in range(1, seeds + 1):
            result, _ = train_student(method=CLASSICAL, config={**KD_CONFIG, "strength": 0.5}, splits=splits, student_arch="resnet8",
                            teacher=teacher, recipe=recipe, seed=seed, accel=accel)
            runs.append(result.test_last if result.status == "ok" else float("nan"))
        log(f"  {setting}: {' '.join(f'{r:.2f}' for r in runs)}")
        rows.append(AccuracyRow(setting, accel, runs))
    base = rows[0].runs
    for row in rows[1:]:
        if row.runs == base:
            row.note = "identical to the baseline: same within noise"
        elif row.runs:
            c = compare_methods(row.runs, base)
            same = c.p_two_sided >= 0.05
            row.note = (f"diff {c.gain:+.2f} (95% CI {c.gain_ci_low:+.2f} to {c.gain_ci_high:+.2f}), Welch p = {c.p_two_sided:.2f}: "
                        + ("same within noise" if same else "DIFFERS from the baseline"))
    return rows


def accuracy_report(rows: list[AccuracyRow], epochs: int) -> list[str]:
    lines = [f"accuracy check: kd, resnet20 -> resnet8 on digits, {epochs} epochs, test accuracy (%) at the last epoch, "
             f"mean ± std over seeds"]
    for r in rows:
        acc = f"{statistics.mean(r.runs):6.2f} ± {statistics.stdev(r.runs):.2f}" if len(r.runs) > 1 else "     -       "
        lines.append(f"  {r.setting:<24} {acc}  {r.note}".rstrip())
    return lines
