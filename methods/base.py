"""What a KD method is: a card in the catalogue (paper, defaults, search space, options) and a
module that adds losses.

Following mdistiller's distiller interface, a method wraps the student and the (frozen) teacher
and returns ``(student_logits, {loss_name: loss})`` from ``forward_train``; the engine sums the
losses. Trainable extras (regressors, connectors, heads, memory banks) are submodules of the
method, so the optimiser trains them and the budget counts them. The engine knows nothing about
any particular method: a method's own options (TAKD's assistant, MKD's extra teachers) reach it
unopened in ``Context.options``, and it resolves their defaults itself (``resolve_options``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.datasets import DatasetInfo
from audit.engine.models import Features, model_names
from audit.engine.policies import get_policy
from audit.errors import AuditError, unknown
from methods.catalogue import Card


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


def _frozen(module: nn.Module) -> nn.Module:
    return module


@dataclass
class Context:
    """What a method may know when it builds its parts."""

    student: FeatureShapes
    teacher: FeatureShapes | None
    num_train: int
    in_channels: int = 3
    epochs: int = 1  # the budget's epochs, for methods with schedules (warm-ups, extra stages)
    paper_protocol: bool = False  # extra stages get their own full budget (more compute, reported)
    options: dict = field(default_factory=dict)  # this method's study options (its card's), resolved
    extra_teachers: list[nn.Module] = field(default_factory=list)  # frozen, eval mode: the option teachers
    # The run's generator, for methods that draw their own random numbers (UDA's strong view).
    generator: torch.Generator | None = None
    hflip: bool = True  # whether mirroring an image keeps its label in this data set
    # The data set's shape and normalisation, for methods that draw a view by policy name (UDA's).
    info: DatasetInfo | None = None
    # The engine's way to take a network a method trained (TAKD's assistant) as a frozen teacher.
    as_teacher: Callable[[nn.Module], nn.Module] = _frozen


class Method(nn.Module):
    """Base class; a subclass declares the class attributes and implements ``forward_train``."""

    name: ClassVar[str]
    # Set from the method's card by ``register_method`` (methods/catalogue.toml): aliases, paper,
    # year, family, shared, defaults, space, extra_cost, notes, needs_teacher.
    card: ClassVar[Card]
    aliases: ClassVar[tuple[str, ...]]
    paper: ClassVar[str]
    year: ClassVar[int]
    family: ClassVar[str]
    needs_teacher: ClassVar[bool]
    shared: ClassVar[tuple[str, ...]]
    defaults: ClassVar[dict[str, float | int | str]]
    extra_cost: ClassVar[str]
    notes: ClassVar[tuple[str, ...]]

    def __init__(self, student: nn.Module, teacher: nn.Module | None, config: dict, ctx: Context) -> None:
        super().__init__()
        self.student = student
        # Held outside the module tree so it is never trained, saved with the student or counted.
        self._teacher = [teacher] if teacher is not None else []
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.hp = self.hyper_parameters(config)
        self.ctx = ctx

    @property
    def teacher(self) -> nn.Module:
        if not self._teacher:
            raise RuntimeError(f"method {self.name} has no teacher")
        return self._teacher[0]

    @classmethod
    def search_space(cls) -> dict:
        return cls.card.search_space()

    @classmethod
    def default_config(cls) -> dict[str, float | int | str]:
        return cls.card.default_config()

    @classmethod
    def hyper_parameters(cls, config: dict) -> dict:
        """Every hyper-parameter of a run: the paper's defaults, overridden by the trial's config."""
        return {**cls.defaults, **config}

    @classmethod
    def resolve_options(cls, options: dict, *, teacher: str, student: str) -> dict:
        """This method's study options, checked (unknown ones refused, architectures known) and
        with defaults filled in; a method with options of its own overrides this to add defaults."""
        extra = sorted(set(options) - set(cls.card.options))
        if extra:
            allowed = ", ".join(cls.card.options) or "none"
            raise AuditError(f"unknown option(s) {extra} for method {cls.name}; allowed: {allowed}")
        resolved = {}
        for name, value in options.items():
            kind = cls.card.options[name].kind
            if kind == "policy":  # an augmentation policy by name (audit.engine.policies)
                if not isinstance(value, str):
                    raise AuditError(f"option {name} of method {cls.name} must be an augmentation policy name, got {value!r}")
                resolved[name] = get_policy(value).name
                continue
            archs = [value] if kind == "architecture" else value
            if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
                raise AuditError(f"option {name} of method {cls.name} must be {'an architecture name' if kind == 'architecture' else 'a list of architecture names'}, got {value!r}")
            for arch in archs:
                if arch not in model_names():
                    raise unknown("architecture", arch, model_names())
            resolved[name] = value if kind == "architecture" else list(value)
        return resolved

    @classmethod
    def extra_teachers(cls, options: dict) -> list[str]:
        """Architectures the engine trains once (cached) and hands to the method frozen, in
        ``Context.extra_teachers``: those of the options its card marks as teachers."""
        return cls.card.extra_teachers(options)

    def train(self, mode: bool = True) -> "Method":
        super().train(mode)
        for t in self._teacher:
            t.eval()  # the teacher's batch-norm statistics must never move
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def teacher_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        # no_grad rather than inference_mode: teacher outputs are saved by the student's loss graph
        # (inference tensors cannot be), and cloning them out would cost what inference mode saves.
        with torch.no_grad():
            return self.teacher(x)

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
