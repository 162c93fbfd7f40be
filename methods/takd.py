"""Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher Assistant" (AAAI 2020,
arXiv 1902.03393).

An assistant of intermediate size is distilled from the teacher with KD, then the student is
distilled from the assistant with KD: (1 - lambda) CE + lambda T^2 KL. The authors' code takes
the KL with ``nn.KLDivLoss()``, which averages over the batch AND the classes (``kl_reduction =
"classes"``, the default here); Hinton et al.'s and the seed survey's KL sums over the classes
(``"batch"``), C times more. Paper defaults (CIFAR): T and lambda searched per pair (T=5,
lambda=0.5 as the seed survey ran it).

The assistant's architecture is this method's option ``assistant`` (``[options.takd]`` in a study,
``--assistant`` on the command line); by default a CIFAR ResNet halfway in depth between a ResNet
teacher and student. Equal compute by default: the assistant stage takes half of the student's
epoch budget and the student the other half. Under the paper's protocol each stage gets the full
budget, and the run records the extra epochs (the report flags the method as having used more compute).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from audit.engine.models import build_model
from audit.errors import AuditError
from methods import register_method
from methods.base import Context
from methods.kd import KD

_RESNET_DEPTHS = (8, 14, 20, 26, 32, 44, 56, 110)


def default_assistant(teacher: str, student: str) -> str:
    """A CIFAR ResNet halfway in depth between a ResNet teacher and student (Mirzadeh et al. 2020)."""
    m_t, m_s = re.fullmatch(r"resnet(\d+)", teacher), re.fullmatch(r"resnet(\d+)", student)
    if not (m_t and m_s):
        raise AuditError(f"takd needs an assistant architecture between {teacher} and {student}: give --assistant "
                         "(or assistant in the study file's [options.takd])")
    mid = (int(m_t.group(1)) + int(m_s.group(1))) / 2
    return f"resnet{min(_RESNET_DEPTHS, key=lambda d: (abs(d - mid), d))}"


REDUCTIONS = ("classes", "batch")


def _reduced(logits: torch.Tensor, losses: dict[str, torch.Tensor], reduction: str) -> dict[str, torch.Tensor]:
    """KD's losses with the KL averaged over the classes too when ``reduction`` is ``classes``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"takd kl_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return {**losses, "kd": losses["kd"] / logits.shape[1]} if reduction == "classes" else losses


class _ReducedKD(KD):
    """KD with the KL reduced as ``kl_reduction`` says: the student's loss and, unregistered, the
    assistant's stage."""

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, losses = super().forward_train(x, y, index)
        return logits, _reduced(logits, losses, str(self.hp["kl_reduction"]))


@register_method
class TAKD(_ReducedKD):
    name = "takd"

    @classmethod
    def resolve_options(cls, options: dict, *, teacher: str, student: str) -> dict:
        resolved = super().resolve_options(options, teacher=teacher, student=student)
        if "assistant" not in resolved:
            resolved["assistant"] = default_assistant(teacher, student)
        return resolved

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        if "assistant" not in ctx.options:
            raise ValueError("takd needs its assistant option (resolved by the study)")

    def pretrain(self, fit, epochs: int) -> int:  # noqa: ANN001
        device = next(self.student.parameters()).device
        num_classes = self.ctx.student.num_classes
        assistant = build_model(self.ctx.options["assistant"], in_channels=self.ctx.in_channels, num_classes=num_classes).to(device)
        stage_epochs = epochs if self.ctx.paper_protocol else max(1, epochs // 2)
        stage = _ReducedKD(assistant, self.teacher, {k: self.hp[k] for k in ("temperature", "alpha", "strength", "kl_reduction")}, self.ctx)
        fit(stage, stage_epochs)
        assistant.eval()
        for p in assistant.parameters():
            p.requires_grad_(False)
        self._teacher = [self.ctx.as_teacher(assistant)]  # the student's teacher from now on, frozen in eval mode
        return stage_epochs
