"""One training run: a pure function of (config, seed) under a fixed budget in epochs.

The same seed gives the same numbers on the CPU: the seed fixes initialisation, data order and
augmentation (one generator, on the data's device). Data stay resident as tensors and are
augmented in batches; the loss is checked for NaN/inf once per epoch so there is no per-step
host synchronisation on a GPU. ``Accel`` holds what changes speed but not the budget: the
channels-last layout, the GPU-only settings (bf16 autocast, torch.compile; no-ops on the CPU)
and the teacher-output cache (bitwise exact, see ``audit.engine.teacher_cache``).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from audit.engine.data import Split, Splits
from audit.engine.models import build_model
from audit.engine.policies import DEFAULT as DEFAULT_POLICY
from audit.engine.policies import get_policy
from audit.engine.teacher_cache import CachedTeacher, TeacherCache
from audit.errors import AuditError
from methods import get_method
from methods.base import Context, FeatureShapes

SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class Recipe:
    """The optimiser and schedule every run in a study shares (part of the budget)."""

    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs, for the step schedule
    gamma: float = 0.1
    # The augmentation policy of every training batch (audit.engine.policies); the searched
    # strength acts through its ``strength`` step.
    augment: str = DEFAULT_POLICY

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise AuditError(f"epochs must be a positive integer, got {self.epochs}")
        if self.batch_size < 2:
            raise AuditError(f"batch size must be at least 2, got {self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise AuditError(f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        object.__setattr__(self, "augment", get_policy(self.augment).name)

    def to_dict(self) -> dict:
        """The recipe as stored and hashed. The default policy is left out, so studies and teacher
        cache entries made before recipes named a policy keep their budget hash and key."""
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        if self.augment == DEFAULT_POLICY:
            del d["augment"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        """A recipe from its stored form (``to_dict``'s, or a study file's table: milestones a list)."""
        return cls(**{**d, "milestones": tuple(d["milestones"])} if "milestones" in d else d)


@dataclass(frozen=True)
class Accel:
    """Speed settings; not part of the budget (they are not hashed and a study may change them).

    ``bf16`` and ``compile`` act on CUDA only (``on`` drops them elsewhere): bf16 autocast changes
    the numbers (forward in bf16, weights and optimiser in float32) and compiling costs more than
    a short CPU run gains. ``channels_last`` acts everywhere: NHWC is cuDNN's fastest layout and
    oneDNN's on the CPU (a KD step 1.2-1.3x faster on the project's CPU); its convolutions sum in
    another order, so numbers differ from NCHW at float precision (about 1e-6 relative per step)
    while each layout stays deterministic. ``teacher_cache`` is bitwise exact.
    """

    channels_last: bool = True  # NHWC activations and weights
    bf16: bool = False  # autocast forward passes to bfloat16
    compile: bool = False  # torch.compile the student and the teacher (pays a one-off compile per run)
    teacher_cache: bool = True  # reuse the teacher's outputs when batches are not augmented
    teacher_cache_bytes: int = 1 << 30  # per teacher; above it the teacher is run every step

    def on(self, device: torch.device) -> "Accel":
        """The settings that take effect on ``device``."""
        if device.type == "cuda":
            return self
        return replace(self, bf16=False, compile=False)

    def label(self) -> str:
        """The settings that are on, e.g. ``channels_last+teacher_cache`` (``none`` when all are off)."""
        on = [f.name for f in fields(self) if isinstance(getattr(self, f.name), bool) and getattr(self, f.name)]
        return "+".join(on) or "none"

    @classmethod
    def from_dict(cls, d: dict) -> "Accel":
        allowed = [f.name for f in fields(cls)]
        extra = sorted(set(d) - set(allowed))
        if extra:
            raise AuditError(f"unknown [accel] keys {extra}; allowed: {', '.join(allowed)}")
        return cls(**d)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model``, laid out and compiled as asked (in place)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            model.compile()  # in place: state_dict keys and the module's type stay as they were
        return model


@dataclass
class RunResult:
    status: str  # "ok" or "failed"
    reason: str = ""
    val_acc: list[float] = field(default_factory=list)  # per epoch, percent
    val_nll: list[float] = field(default_factory=list)  # per epoch, mean log-loss (nats) of the true class
    test_acc: list[float] = field(default_factory=list)  # per epoch, only when the test split was given
    train_loss: list[float] = field(default_factory=list)
    epochs: int = 0
    pretrain_epochs: int = 0
    steps: int = 0
    images: int = 0
    flops: float = 0.0  # training FLOPs: measured per image on a real step, times images seen
    wall_s: float = 0.0

    @property
    def val_last(self) -> float:
        return self.val_acc[-1] if self.val_acc else math.nan

    @property
    def val_best(self) -> float:
        return max(self.val_acc) if self.val_acc else math.nan

    @property
    def test_last(self) -> float:
        return self.test_acc[-1] if self.test_acc else math.nan

    @property
    def test_best(self) -> float:
        return max(self.test_acc) if self.test_acc else math.nan


class RunFailed(Exception):
    """A run that cannot go on (NaN/inf loss, out of memory); the reason is the message."""


def scores(model: nn.Module, split: Split, batch_size: int = 1024, accel: Accel = Accel()) -> tuple[float, float]:
    """(accuracy in percent, mean log-loss in nats) of ``model`` on ``split``; NaN for both on an
    empty split (a run that trains on the whole training split has no validation split)."""
    if len(split) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=split.y.device)
    nll = torch.zeros((), dtype=torch.float64, device=split.y.device)
    with torch.inference_mode(), accel.autocast():
        for i in range(0, len(split), batch_size):
            logits, _ = model(split.x[i : i + batch_size])
            y = split.y[i : i + batch_size]
            correct += (logits.argmax(1) == y).sum()
            nll += F.cross_entropy(logits.float(), y, reduction="sum").double()
    model.train(was_training)
    return 100.0 * correct.item() / len(split), nll.item() / len(split)


def accuracy(model: nn.Module, split: Split, batch_size: int = 1024, accel: Accel = Accel()) -> float:
    return scores(model, split, batch_size, accel)[0]


class _Trainer:
    """The loop shared by the main stage and any extra stage a method declares."""

    def __init__(self, splits: Splits, recipe: Recipe, strength: float, generator: torch.Generator, result: RunResult,
                 accel: Accel = Accel(), cache: TeacherCache | None = None):
        self.splits, self.recipe, self.strength, self.g, self.result = splits, recipe, strength, generator, result
        self.accel, self.cache = accel, cache
        self.policy = get_policy(recipe.augment)

    def batches(self) -> list[torch.Tensor]:
        n = len(self.splits.train)
        perm = torch.randperm(n, generator=self.g, device=self.splits.train.y.device)
        # Near-equal chunks instead of a ragged last batch: batch-norm needs more than one sample.
        return list(torch.tensor_split(perm, max(1, n // self.recipe.batch_size)))

    def _inputs(self, idx: torch.Tensor, idx_host: torch.Tensor) -> torch.Tensor:
        x = self.splits.train.x[idx]
        if self.policy.is_random(self.strength):
            x = self.policy(x, self.g, self.splits.info, self.strength)
        if self.accel.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.cache is not None:  # only built when the policy leaves x alone: x is exactly train.x[idx]
            self.cache.bind(x, idx, idx_host)
        return x

    def fit(
        self,
        module: nn.Module,
        epochs: int,
        on_epoch: Callable[[int, dict], None] | None = None,
        evaluate: Callable[[], dict] | None = None,
    ) -> None:
        r = self.recipe
        params = module.trainable_parameters()
        opt = torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov, weight_decay=r.weight_decay)
        steps_per_epoch = max(1, len(self.splits.train) // r.batch_size)
        total = epochs * steps_per_epoch
        if r.schedule == "cosine":
            lr_at = lambda s: 0.5 * (1 + math.cos(math.pi * s / total))  # noqa: E731
        else:
            bounds = [m * total for m in r.milestones]
            lr_at = lambda s: r.gamma ** sum(s >= b for b in bounds)  # noqa: E731
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        train = self.splits.train
        flops_per_image = None
        images_before = self.result.images
        for epoch in range(epochs):
            module.train()
            loss_sum = torch.zeros((), device=train.y.device)
            batches = self.batches()
            # The cache keeps its bookkeeping on the host: one copy of the order per epoch, not per step.
            host = torch.cat(batches).cpu().split([len(b) for b in batches]) if self.cache is not None else batches
            for idx, idx_host in zip(batches, host):
                x = self._inputs(idx, idx_host)
                if flops_per_image is None:
                    # Counted once on a real step (forward, backward, teacher included), then scaled;
                    # the first step always runs the teacher, so the count is the same with the cache.
                    with FlopCounterMode(display=False) as counter:
                        loss = self._step(module, opt, x, train.y[idx], idx)
                    flops_per_image = counter.get_total_flops() / len(idx)
                else:
                    loss = self._step(module, opt, x, train.y[idx], idx)
                sched.step()
                loss_sum += loss.detach()
                self.result.steps += 1
                self.result.images += len(idx)
            mean_loss = loss_sum.item() / steps_per_epoch
            if not math.isfinite(mean_loss):
                raise RunFailed(f"non-finite training loss at epoch {epoch + 1}")
            if evaluate is not None:
                metrics = evaluate()
                metrics["train_loss"] = mean_loss
                self.result.train_loss.append(mean_loss)
                if on_epoch is not None:
                    on_epoch(epoch + 1, metrics)
        if self.cache is not None:
            self.cache.unbind()  # no stale batch for calls made outside training
        self.result.flops += (flops_per_image or 0.0) * (self.result.images - images_before)

    def _step(self, module: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        with self.accel.autocast():
            _, losses = module.forward_train(x, y, idx)
            loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss


def train_student(
    *,
    method: str,
    config: dict,
    splits: Splits,
    student_arch: str,
    teacher: nn.Module | None,
    recipe: Recipe,
    seed: int,
    on_epoch: Callable[[int, dict], None] | None = None,
    paper_protocol: bool = False,
    extra_teachers: list[nn.Module] | None = None,
    options: dict | None = None,
    accel: Accel = Accel(),
) -> tuple[RunResult, nn.Module]:
    """Train ``student_arch`` with ``method`` and ``config``; evaluate on val (and test if present) each epoch.

    ``options`` are the method's own study options, handed to it unopened; ``extra_teachers`` the
    frozen networks its options ask for (``Method.extra_teachers``). Returns the result and the
    trained student. A failed run returns ``status="failed"`` with its reason.
    """
    start = time.perf_counter()
    result = RunResult(status="ok")
    device = splits.train.x.device
    accel = accel.on(device)
    cls = get_method(method)
    torch.manual_seed(seed)
    g = torch.Generator(device=device).manual_seed(seed)
    info = splits.info
    student = accel.prepare(build_model(student_arch, in_channels=info.shape[0], num_classes=info.num_classes).to(device))
    if accel.channels_last or accel.compile:
        # Laid out (and compiled) on copies: the caller's teachers must stay as they were given.
        teacher = accel.prepare(copy.deepcopy(teacher)) if teacher is not None else None
        extra_teachers = [accel.prepare(copy.deepcopy(t)) for t in extra_teachers or []]
    strength = float(cls.hyper_parameters(config).get("strength", 0.0))
    cache = None
    if accel.teacher_cache and not get_policy(recipe.augment).is_random(strength) and cls.needs_teacher and teacher is not None:
        cache = TeacherCache(len(splits.train), accel.teacher_cache_bytes)
    # Every frozen network a method learns from goes through the cache when there is one,
    # including those it trains itself first (TAKD's assistant, through ctx.as_teacher).
    as_teacher = (lambda t: CachedTeacher(t, cache)) if cache is not None else (lambda t: t)  # noqa: E731
    sample = splits.train.x[:2]
    ctx = Context(
        student=FeatureShapes.of(student, sample),
        teacher=FeatureShapes.of(teacher, sample) if (teacher is not None and cls.needs_teacher) else None,
        num_train=len(splits.train),
        in_channels=info.shape[0],
        epochs=recipe.epochs,
        paper_protocol=paper_protocol,
        options=dict(options or {}),
        extra_teachers=[as_teacher(t) for t in extra_teachers or []],
        generator=g,
        hflip=info.hflip,
        info=info,
        as_teacher=as_teacher,
    )
    module = cls(student, as_teacher(teacher) if cls.needs_teacher and teacher is not None else None, dict(config), ctx).to(device)
    if accel.channels_last:
        module.to(memory_format=torch.channels_last)  # the method's own parts (regressors, connectors)
    trainer = _Trainer(splits, recipe, strength, g, result, accel, cache)

    def evaluate() -> dict:
        metrics = dict(zip(("val_acc", "val_nll"), scores(student, splits.val, accel=accel)))
        result.val_acc.append(metrics["val_acc"])
        result.val_nll.append(metrics["val_nll"])
        if splits.test is not None:
            metrics["test_acc"] = accuracy(student, splits.test, accel=accel)
            result.test_acc.append(metrics["test_acc"])
        metrics["epoch"] = len(result.val_acc)
        return metrics

    try:
        used = module.pretrain(lambda m, n: trainer.fit(m, n), recipe.epochs)
        result.pretrain_epochs = used
        main_epochs = recipe.epochs if paper_protocol else recipe.epochs - used
        if main_epochs < 1:
            raise RunFailed(f"extra stages used {used} of {recipe.epochs} epochs, leaving none for the student")
        result.epochs = used + main_epochs
        trainer.fit(module, main_epochs, on_epoch, evaluate)
    except RunFailed as exc:
        result.status, result.reason = "failed", str(exc)
    except torch.OutOfMemoryError:
        result.status, result.reason = "failed", "out of memory"
    result.wall_s = time.perf_counter() - start
    return result, student
