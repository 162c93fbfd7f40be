"""Heo et al. 2019, "Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden
Neurons" (AAAI 2019, arXiv 1811.03233).

Stage 1 (initialisation) transfers the teacher's activation boundaries: with connector r (1x1 conv
+ BN where the shapes differ) on the student's pre-ReLU stage features s and the teacher's pre-ReLU
features t, margin mu and rho(t) = [t > 0], the alternative (hinge-squared) loss is

    L_i = sum rho(t) * relu(mu - r(s))^2 + (1 - rho(t)) * relu(mu + r(s))^2
    L   = scale * sum_i w_i L_i / (batch * 1000),  w = (..., 1/4, 1/2, 1) from the first to the last stage

Stage 2 trains the student by KD: (1 - alpha) CE + alpha KL, the KL at temperature T and times
T^2 only when ``t_squared`` (Hinton et al.'s scaling, which the seed survey's KD stage used). Stage 1
runs inside the budget through ``pretrain`` for a fraction of the epochs (the survey's 10 of 200).

Paper defaults (the authors' CIFAR-10 code, ``train_KD``): margin 1.0, scale 3, stage 2 the KL
at temperature 3 alone, summed over classes and averaged over the batch, without T^2 (alpha = 1,
t_squared false).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import (
    PretrainStage,
    conv_bn_connector,
    ctx_stages,
    freeze,
    init_epochs,
    match_spatial,
)
from methods.base import Context, Method, kd_divergence


def ab_margin_loss(source: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Summed hinge-squared loss pushing ``source`` beyond +-margin on the side of ``target``'s sign."""
    on = (target > 0).to(source.dtype)
    return (on * F.relu(margin - source).pow(2) + (1 - on) * F.relu(margin + source).pow(2)).sum()


def stage_weights(k: int) -> list[float]:
    """1/2^(k-1), ..., 1/2, 1: the deepest stage weighs most."""
    return [2.0 ** (i - k + 1) for i in range(k)]


@register_method
class AB(Method):
    name = "ab"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        self.s_idx, self.t_idx = ctx_stages(ctx)
        # As the authors' code: no connector where the shapes already agree.
        self.connectors = nn.ModuleList(
            nn.Identity() if ctx.student.pre[i][0] == ctx.teacher.pre[j][0] else conv_bn_connector(ctx.student.pre[i][0], ctx.teacher.pre[j][0])
            for i, j in zip(self.s_idx, self.t_idx)
        )
        self.weights = stage_weights(len(self.s_idx))

    def boundary_loss(self, x: torch.Tensor) -> torch.Tensor:
        _, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        margin = float(self.hp["margin"])
        total = x.new_zeros(())
        for w, conn, i, j in zip(self.weights, self.connectors, self.s_idx, self.t_idx):
            s, t = match_spatial(conn(feats.pre[i]), t_feats.pre[j])
            total = total + w * ab_margin_loss(s, t, margin)
        return float(self.hp["scale"]) * total / (x.shape[0] * 1000.0)

    def pretrain(self, fit: Callable[[nn.Module, int], None], epochs: int) -> int:
        n = init_epochs(float(self.hp["init_fraction"]), epochs)
        if n > 0:
            stage = PretrainStage(
                {"student": self.student, "connectors": self.connectors},
                lambda x, y, index: (x.new_zeros(()), {"ab": self.boundary_loss(x)}),
            )
            fit(stage, n)
        freeze(self.connectors)  # used only for the initialisation
        return n

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        alpha, temp = float(self.hp["alpha"]), float(self.hp["temperature"])
        kd = kd_divergence(logits, t_logits, temp) * (1.0 if self.hp["t_squared"] else 1.0 / temp**2)
        losses = {"kd": alpha * kd}
        if alpha < 1:
            losses["ce"] = (1.0 - alpha) * F.cross_entropy(logits, y)
        return logits, losses
