"""Romero et al. 2015, "FitNets: Hints for Thin Deep Nets" (ICLR 2015, arXiv 1412.6550).

A regressor maps the student's guided layer onto the teacher's hint layer and their squared
error is added to the loss: CE * (1 - alpha) + alpha * KD + beta * MSE(reg(s_guided), t_hint).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods.base import Context, Method


class Regressor(nn.Module):
    """Conv regressor (as the CRD benchmark's ConvReg) adapting channels and spatial size."""

    def __init__(self, s_shape: tuple[int, ...], t_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.out_hw = t_shape[1:]
        self.resize = tuple(s_shape[1:]) != tuple(t_shape[1:])
        self.conv = nn.Conv2d(s_shape[0], t_shape[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(t_shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize:
            # Pool down or upsample so any pair of stages can be matched.
            x = F.adaptive_avg_pool2d(x, self.out_hw) if x.shape[-1] >= self.out_hw[-1] else F.interpolate(x, self.out_hw)
        return F.relu(self.bn(self.conv(x)))


def stage_index(position: str, n_stages: int) -> int:
    """Index into ``Features.post`` (0 is the stem) of the middle or last stage."""
    return {"middle": (n_stages + 1) // 2, "last": n_stages}[position]


@register_method
class FeatureKD(Method):
    name = "feature_kd"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        self.s_idx = stage_index(str(self.hp["hint_stage"]), len(ctx.student.post) - 1)
        self.t_idx = stage_index(str(self.hp["hint_stage"]), len(ctx.teacher.post) - 1)
        self.regressor = Regressor(ctx.student.post[self.s_idx], ctx.teacher.post[self.t_idx])

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        losses = {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "hint": float(self.hp["beta"]) * F.mse_loss(self.regressor(feats.post[self.s_idx]), t_feats.post[self.t_idx]),
        }
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
