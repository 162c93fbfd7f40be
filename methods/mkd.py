"""Multi-teacher KD as the seed survey ran it (Ruffy & Chahal 2019, "MKD"; the idea goes back
to ensembles of teachers in Hinton et al. 2015 and You et al. 2017).

loss = (1 - alpha) * CE + alpha * T^2 * mean over teachers of KL(p_teacher^T || p_student^T).
The further teachers are declared by the study (``extra_teachers``), trained once and cached
like the main teacher. Survey defaults: T=5, alpha=0.5; teachers its ResNet26 and a WRN22-4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods.base import Context, Method, kd_divergence


@register_method
class MKD(Method):
    name = "mkd"
    aliases = ("multi_teacher", "ensemble_kd")
    paper = "Ruffy & Chahal 2019, The State of Knowledge Distillation for Classification (multi-teacher KD)"
    year = 2019
    family = "multi-teacher"
    defaults = {"temperature": 5.0, "alpha": 0.5, "strength": 0.5}
    extra_cost = "one forward pass per extra teacher each step, and training each extra teacher once (cached)"
    notes = ("The survey's second teacher was a WRN22-4; here the study declares them (default wrn_16_2).",)

    def __init__(self, student: nn.Module, teacher: nn.Module, hp: dict, ctx: Context) -> None:
        super().__init__(student, teacher, hp, ctx)
        if not ctx.extra_teachers:
            raise ValueError("mkd needs the study's extra_teachers")
        for t in ctx.extra_teachers:
            t.eval()
            for p in t.parameters():
                p.requires_grad_(False)
        self._teacher = [teacher, *ctx.extra_teachers]  # all frozen in eval mode through train()

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        temperature, alpha = float(self.hp["temperature"]), float(self.hp["alpha"])
        with torch.no_grad():
            teacher_logits = [t(x)[0] for t in self._teacher]
        kd = torch.stack([kd_divergence(logits, t, temperature) for t in teacher_logits]).mean()
        return logits, {"ce": (1.0 - alpha) * F.cross_entropy(logits, y), "kd": alpha * kd}
