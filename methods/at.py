"""Zagoruyko & Komodakis 2017, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer" (ICLR 2017, arXiv 1612.03928).

The attention map of a feature A (C x H x W) is Q = vec(mean_c |A_c|^p), p = 2; each stage's
student and teacher maps are L2-normalised and their squared difference averaged over positions
and batch (the authors' code; the paper's "beta divided by the number of elements and the batch"):

    loss = (1 - alpha) CE + alpha KD + beta * sum_stages mean((Q_s/|Q_s| - Q_t/|Q_t|)^2)

Paper defaults: p = 2, beta = 1000, AT alone (alpha = 0; AT + KD is the paper's combination).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import ctx_stages, match_spatial
from methods.base import Context, Method


def attention_map(f: torch.Tensor, p: float) -> torch.Tensor:
    """Channel mean of |f|^p: (B, C, H, W) -> (B, H, W)."""
    return f.abs().pow(p).mean(1)


def at_loss(f_s: torch.Tensor, f_t: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    # Different spatial sizes: the larger feature map is pooled before its attention map is taken,
    # as the CRD benchmark's and mdistiller's code do (the authors' code needs equal sizes).
    f_s, f_t = match_spatial(f_s, f_t)
    a_s, a_t = attention_map(f_s, p), attention_map(f_t, p)
    q_s = F.normalize(a_s.flatten(1), dim=1)
    q_t = F.normalize(a_t.flatten(1), dim=1)
    return (q_s - q_t).pow(2).mean()


@register_method
class AT(Method):
    name = "at"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        self.s_idx, self.t_idx = ctx_stages(ctx)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        alpha, p = float(self.hp["alpha"]), float(self.hp["p"])
        at = sum(at_loss(feats.post[i], t_feats.post[j], p) for i, j in zip(self.s_idx, self.t_idx))
        losses = {"ce": (1.0 - alpha) * F.cross_entropy(logits, y), "at": float(self.hp["beta"]) * at}
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
