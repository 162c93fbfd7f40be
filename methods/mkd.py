"""Multi-teacher KD as the seed survey ran it (Ruffy & Chahal 2019, "MKD"; the idea goes back
to ensembles of teachers in Hinton et al. 2015 and You et al. 2017).

loss = (1 - alpha) * CE + alpha * T^2 * mean over teachers of KL(p_teacher^T || p_student^T).
The further teachers are this method's option ``extra_teachers`` (``[options.mkd]`` in a study,
``--extra-teacher`` on the command line; default wrn_16_2, or resnet32 when the teacher is
wrn_16_2); the engine trains each once, caches it like the main teacher and hands it over frozen.
Survey defaults: T=5, alpha=0.5; teachers its ResNet26 and a WRN22-4.
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

    @classmethod
    def resolve_options(cls, options: dict, *, teacher: str, student: str) -> dict:
        resolved = super().resolve_options(options, teacher=teacher, student=student)
        if not resolved.get("extra_teachers"):
            resolved["extra_teachers"] = ["wrn_16_2" if teacher != "wrn_16_2" else "resnet32"]
        return resolved

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        if not ctx.extra_teachers:
            raise ValueError("mkd needs its extra teachers (the engine builds them from its extra_teachers option)")
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
