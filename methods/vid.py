"""Ahn et al. 2019, "Variational Information Distillation for Knowledge Transfer" (CVPR 2019,
arXiv 1904.05835).

VID maximises a variational lower bound on the mutual information between teacher and student
features: for each stage a Gaussian q(t | s) with mean mu(s) (a small 1x1-conv regressor on the
student feature) and a per-channel heteroscedastic variance sigma_c^2 = softplus(a_c) + eps, so
-log q(t | s) = sum_{c,h,w} [ log sigma_c + (t - mu_c(s))^2 / (2 sigma_c^2) ] + const and

    loss = (1 - alpha) CE + alpha KD + beta * sum_stages mean_{b,c,h,w} 0.5 [ (t - mu)^2 / sigma^2 + log sigma^2 ]

Defaults (the CRD benchmark's VID): beta = 1, initial variance 5, hidden width = the teacher's
channels; VID alone (alpha = 0), VID + KD being the paper's combination.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import ctx_stages, match_spatial
from methods.base import Context, Method


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Mean of 0.5 [(t - mu)^2 / var + log var] with ``var`` per channel, shape (C,)."""
    v = var.view(1, -1, *([1] * (mean.dim() - 2)))
    return (0.5 * ((mean - target).pow(2) / v + torch.log(v))).mean()


class VIDRegressor(nn.Module):
    """mu(s): three 1x1 convs with ReLUs, and the per-channel variance softplus(a) + eps."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, init_var: float = 5.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.mean = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(c_mid, c_mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(c_mid, c_out, 1, bias=False),
        )
        self.eps = eps
        # softplus^-1(init_var - eps), so the variance starts at init_var.
        self.raw_var = nn.Parameter(torch.full((c_out,), math.log(math.expm1(init_var - eps))))

    def variance(self) -> torch.Tensor:
        return F.softplus(self.raw_var) + self.eps

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        f_s, f_t = match_spatial(f_s, f_t)
        return gaussian_nll(self.mean(f_s), f_t, self.variance())


@register_method
class VID(Method):
    name = "vid"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        self.s_idx, self.t_idx = ctx_stages(ctx)
        init_var = float(self.hp["init_var"])
        self.regressors = nn.ModuleList(
            VIDRegressor(ctx.student.post[i][0], ctx.teacher.post[j][0], ctx.teacher.post[j][0], init_var)
            for i, j in zip(self.s_idx, self.t_idx)
        )

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        nll = sum(reg(feats.post[i], t_feats.post[j]) for reg, i, j in zip(self.regressors, self.s_idx, self.t_idx))
        losses = {"ce": (1.0 - alpha) * F.cross_entropy(logits, y), "vid": float(self.hp["beta"]) * nll}
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
