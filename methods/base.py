"""What a KD method is: a declaration (paper, defaults, search space) and a module that adds losses.

Following mdistiller's distiller interface, a method wraps the student and the (frozen) teacher
and returns ``(student_logits, {loss_name: loss})`` from ``forward_train``; the engine sums the
losses. Trainable extras (regressors, connectors, heads, memory banks) are submodules of the
method, so the optimiser trains them and the budget counts them. The engine knows nothing about
any particular method.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from optuna.distributions import BaseDistribution, FloatDistribution
from torch import nn

from audit.engine.models import Features
from audit.engine.teacher_cache import TeacherCache

# The dimensions every method shares where they apply. Ranges cover the values KD papers use
# (T from 1 to 10; the survey hard-coded T=5, alpha=0.5; CRD's benchmark T=4).
SHARED_SPACE: dict[str, BaseDistribution] = {
    "temperature": FloatDistribution(1.0, 10.0),
    "alpha": FloatDistribution(0.0, 1.0),
    "strength": FloatDistribution(0.0, 1.0),
}

FAMILIES = ("baseline", "logits", "features", "relations", "multi-teacher", "multi-stage")


@dataclass(frozen=True)
class FeatureShapes:
    """Shapes (without the batch) of a model's features, read off one probe forward pass."""

    pre: list[tuple[int, ...]]
    post: list[tuple[int, ...]]
    pooled: int
    num_classes: int

    @classmethod
    def of(cls, model: nn.Module, sample: torch.Tensor) -> "FeatureShapes":
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits, feats = model(sample[:2])
        model.train(was_training)
        return cls(
            [tuple(t.shape[1:]) for t in feats.pre],
            [tuple(t.shape[1:]) for t in feats.post],
            int(feats.pooled.shape[1]),
            int(logits.shape[1]),
        )


@dataclass
class Context:
    """What a method may know when it builds its parts."""

    student: FeatureShapes
    teacher: FeatureShapes | None
    num_train: int
    # A strong per-sample augmentation bound to the run's generator (UDA-style views).
    strong_augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    extra_teachers: list[nn.Module] = field(default_factory=list)  # frozen, eval mode (multi-teacher methods)
    assistant: str | None = None  # architecture of TAKD's teacher assistant, chosen by the study
    in_channels: int = 3
    epochs: int = 1  # the budget's epochs, for methods with schedules (warm-ups, extra stages)
    paper_protocol: bool = False  # extra stages get their own full budget (more compute, reported)
    teacher_cache: TeacherCache | None = None  # set by the engine when the teacher sees un-augmented batches


class Method(nn.Module):
    """Base class; a subclass declares the class attributes and implements ``forward_train``."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    paper: ClassVar[str]
    year: ClassVar[int]
    family: ClassVar[str]
    needs_teacher: ClassVar[bool] = True
    shared: ClassVar[tuple[str, ...]] = ("temperature", "alpha", "strength")
    # The paper's defaults, shared dimensions included, recorded next to the citation.
    defaults: ClassVar[dict[str, float | int | str]] = {}
    space: ClassVar[dict[str, BaseDistribution]] = {}
    extra_cost: ClassVar[str] = "none"
    # Where the survey's or the benchmark's code differs from the paper, one line each.
    notes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, student: nn.Module, teacher: nn.Module | None, hp: dict, ctx: Context) -> None:
        super().__init__()
        self.student = student
        # Held outside the module tree so it is never trained, saved with the student or counted.
        self._teacher = [teacher] if teacher is not None else []
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.hp = {**self.defaults, **hp}
        self.ctx = ctx

    @property
    def teacher(self) -> nn.Module:
        if not self._teacher:
            raise RuntimeError(f"method {self.name} has no teacher")
        return self._teacher[0]

    @classmethod
    def search_space(cls) -> dict[str, BaseDistribution]:
        return {**{k: SHARED_SPACE[k] for k in cls.shared}, **cls.space}

    @classmethod
    def default_config(cls) -> dict[str, float | int | str]:
        return {k: cls.defaults[k] for k in cls.search_space()}

    def train(self, mode: bool = True) -> "Method":
        super().train(mode)
        for t in self._teacher:
            t.eval()  # the teacher's batch-norm statistics must never move
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def teacher_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        teacher = self.teacher
        if self.ctx.teacher_cache is not None:
            return self.ctx.teacher_cache.forward(teacher, x, lambda inp: self._run_teacher(teacher, inp))
        return self._run_teacher(teacher, x)

    @staticmethod
    def _run_teacher(teacher: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        # no_grad rather than inference_mode: teacher outputs are saved by the student's loss graph
        # (inference tensors cannot be), and cloning them out would cost what inference mode saves.
        with torch.no_grad():
            return teacher(x)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def optional_kd(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"kd": alpha * KD}`` when the method's alpha is positive, else nothing: feature and
        relation methods add classical KD on top only when the search turns it on."""
        alpha = float(self.hp["alpha"])
        if alpha <= 0:
            return {}
        return {"kd": alpha * kd_divergence(student_logits, teacher_logits, float(self.hp["temperature"]))}

    def pretrain(self, fit: "Callable[[nn.Module, int], None]", epochs: int) -> int:
        """Extra stages before the main one (TAKD's assistant, AB's initialisation).

        ``fit(module, n)`` trains ``module`` (anything with ``forward_train`` and
        ``trainable_parameters``) for ``n`` epochs with the study's recipe. Returns the epochs
        used, which the engine takes out of the main stage unless the paper's protocol is asked for.
        """
        return 0


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: KL(p_t^T || p_s^T) with batchmean reduction, scaled by T^2."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2
