"""Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher Assistant" (AAAI 2020,
arXiv 1902.03393).

An assistant of intermediate size is distilled from the teacher with KD, then the student is
distilled from the assistant with KD. Paper defaults (CIFAR): T and lambda searched per pair
(its code's defaults T=5, lambda=0.5 match the seed survey's).

Equal compute by default: the assistant stage takes half of the student's epoch budget and the
student the other half. Under the paper's protocol each stage gets the full budget, and the run
records the extra epochs (the report flags the method as having used more compute).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import build_model
from methods import register_method
from methods.base import Context, Method, kd_divergence
from methods.kd import KD


@register_method
class TAKD(Method):
    name = "takd"
    aliases = ("teacher_assistant",)
    paper = "Mirzadeh et al. 2020, Improved Knowledge Distillation via Teacher Assistant"
    year = 2020
    family = "multi-stage"
    defaults = {"temperature": 5.0, "alpha": 0.5, "strength": 0.5}
    extra_cost = "an assistant network trained by KD first (half the epochs; the full budget again under --paper-protocol)"
    notes = (
        "The seed survey trained the assistant (resnet20) for the full epochs and then the student for the full epochs: twice KD's compute.",
    )

    def __init__(self, student: nn.Module, teacher: nn.Module, hp: dict, ctx: Context) -> None:
        super().__init__(student, teacher, hp, ctx)
        if ctx.assistant is None:
            raise ValueError("takd needs the study's assistant architecture")

    def pretrain(self, fit, epochs: int) -> int:  # noqa: ANN001
        device = next(self.student.parameters()).device
        num_classes = self.ctx.student.num_classes
        assistant = build_model(self.ctx.assistant, in_channels=self.ctx.in_channels, num_classes=num_classes).to(device)
        stage_epochs = epochs if self.ctx.paper_protocol else max(1, epochs // 2)
        stage = KD(assistant, self.teacher, {k: self.hp[k] for k in ("temperature", "alpha", "strength")}, self.ctx)
        fit(stage, stage_epochs)
        assistant.eval()
        for p in assistant.parameters():
            p.requires_grad_(False)
        self._teacher = [assistant]  # the student's teacher from now on, frozen in eval mode through train()
        return stage_epochs

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        return logits, {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "kd": alpha * kd_divergence(logits, t_logits, float(self.hp["temperature"])),
        }


