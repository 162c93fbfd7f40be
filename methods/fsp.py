"""Yim et al. 2017, "A Gift from Knowledge Distillation: Fast Optimization, Network Minimization
and Transfer Learning" (CVPR 2017).

The flow of solution procedure (FSP) between two feature maps F1 (C1 x H x W) and F2 (C2 x H x W)
is the Gram-like matrix G = F1^T F2 / (H W) (C1 x C2). The student first learns to reproduce the
teacher's FSP matrices between consecutive stages,

    L_FSP = beta * sum_i mean_{b, c1, c2} (G_i^T - G_i^S)^2

and is then trained on the main task (CE) -- the paper's two stages. The first stage runs inside
the budget through ``pretrain``. Where two consecutive maps differ in size the larger is pooled;
where a student feature has other channels than the teacher's, a 1x1 conv (trained in stage 1)
maps it to the teacher's width.

Paper defaults: equal weights lambda_i = 1 over the FSP pairs; stage 2 on the classification loss
alone.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import (
    PretrainStage,
    ctx_stages,
    freeze,
    init_epochs,
    match_spatial,
)
from methods.base import Context, Method


def fsp_matrix(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """(B, C1, H, W), (B, C2, H', W') -> (B, C1, C2), the larger map pooled to the smaller."""
    f1, f2 = match_spatial(f1, f2)
    hw = f1.shape[-2] * f1.shape[-1]
    return torch.bmm(f1.flatten(2), f2.flatten(2).transpose(1, 2)) / hw


@register_method
class FSP(Method):
    name = "fsp"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        s_idx, t_idx = ctx_stages(ctx)
        # The feature before the first matched stage, then each matched stage: k + 1 maps, k pairs.
        self.s_feats = [s_idx[0] - 1, *s_idx]
        self.t_feats = [t_idx[0] - 1, *t_idx]
        self.adapters = nn.ModuleList(
            nn.Identity() if ctx.student.post[i][0] == ctx.teacher.post[j][0] else nn.Conv2d(ctx.student.post[i][0], ctx.teacher.post[j][0], 1, bias=False)
            for i, j in zip(self.s_feats, self.t_feats)
        )

    def fsp_loss(self, x: torch.Tensor) -> torch.Tensor:
        _, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        s = [a(feats.post[i]) for a, i in zip(self.adapters, self.s_feats)]
        t = [t_feats.post[j] for j in self.t_feats]
        loss = x.new_zeros(())
        for n in range(len(s) - 1):
            loss = loss + (fsp_matrix(s[n], s[n + 1]) - fsp_matrix(t[n], t[n + 1])).pow(2).mean()
        return float(self.hp["beta"]) * loss

    def pretrain(self, fit: Callable[[nn.Module, int], None], epochs: int) -> int:
        n = init_epochs(float(self.hp["init_fraction"]), epochs)
        if n > 0:
            stage = PretrainStage(
                {"student": self.student, "adapters": self.adapters},
                lambda x, y, index: (x.new_zeros(()), {"fsp": self.fsp_loss(x)}),
            )
            fit(stage, n)
        freeze(self.adapters)
        return n

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        return logits, {"ce": F.cross_entropy(logits, y)}
