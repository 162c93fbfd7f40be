"""Heo et al. 2019, "A Comprehensive Overhaul of Feature Distillation" (ICCV 2019, arXiv 1904.01866).

Distils the teacher's pre-ReLU stage features. The teacher feature is clipped from below at a
per-channel margin m_c = E[x | x < 0] for x ~ N(beta_c, gamma_c^2), read off the batch norm that
produces it (m_c = -3|gamma_c| when P(x < 0) <= 0.001). A connector (1x1 conv + BN) maps the
student's pre-ReLU feature to the teacher's channels, and the partial L2 distance ignores positions
where both are "off" (student below the clipped teacher, teacher negative):

    d(s, t) = sum (s - max(t, m))^2 * [s > max(t, m) or t > 0]
    loss    = CE + beta * sum_i d(C_i(s_i), t_i) / 2^(k - i - 1) / (batch * 1000)

Paper defaults (the authors' CIFAR-100 code): beta = 1 on top of the 1/(batch * 1000) scaling, CE
weight 1, no KD term, all stages after the stem with the deepest weighted 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import conv_bn_connector, ctx_stages, pool_to
from methods.base import Context, Method


def bn_margin(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """E[x | x < 0] per channel for x ~ N(bias, weight^2); -3|weight| where that tail is below 0.1%."""
    s = weight.detach().abs().double().clamp_min(1e-12)
    m = bias.detach().double()
    z = m / s
    tail = torch.special.ndtr(-z)  # P(x < 0)
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    safe_tail = tail.clamp_min(1e-300)
    margin = torch.where(tail > 1e-3, m - s * pdf / safe_tail, -3.0 * s)
    return margin.float()


def partial_l2(source: torch.Tensor, target: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Summed partial L2 between student ``source`` and teacher ``target`` with per-channel ``margin`` (C,)."""
    t = torch.maximum(target, margin.view(1, -1, 1, 1))
    mask = (source > t) | (t > 0)
    return ((source - t).pow(2) * mask).sum()


@register_method
class OH(Method):
    name = "oh"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        self.s_idx, self.t_idx = ctx_stages(ctx)
        self.connectors = nn.ModuleList(
            conv_bn_connector(ctx.student.pre[i][0], ctx.teacher.pre[j][0]) for i, j in zip(self.s_idx, self.t_idx)
        )
        try:
            bns = list(teacher.bn_before_relu())
        except (AttributeError, NotImplementedError):
            bns = [None] * (len(ctx.teacher.pre) - 1)
        self.zero_margin_stages: list[int] = []
        for n, j in enumerate(self.t_idx):
            bn = bns[j - 1]  # bn_before_relu starts at stage 1
            if isinstance(bn, nn.BatchNorm2d):
                margin = bn_margin(bn.weight, bn.bias)
            else:
                margin = torch.zeros(ctx.teacher.pre[j][0])
                self.zero_margin_stages.append(j)
            self.register_buffer(f"margin{n}", margin)

    def margins(self) -> list[torch.Tensor]:
        return [getattr(self, f"margin{n}") for n in range(len(self.t_idx))]

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        k = len(self.t_idx)
        dist = logits.new_zeros(())
        for n, (conn, i, j, margin) in enumerate(zip(self.connectors, self.s_idx, self.t_idx, self.margins())):
            s, t = conn(feats.pre[i]), t_feats.pre[j]
            if s.shape[-2:] != t.shape[-2:]:
                # Pool the larger map; margins are per channel, so they still apply.
                if s.shape[-2] * s.shape[-1] > t.shape[-2] * t.shape[-1]:
                    s = pool_to(s, t.shape[-2:])
                else:
                    t = pool_to(t, s.shape[-2:])
            dist = dist + partial_l2(s, t, margin) / 2 ** (k - n - 1)
        return logits, {
            "ce": F.cross_entropy(logits, y),
            "ofd": float(self.hp["beta"]) * dist / (x.shape[0] * 1000.0),
        }
