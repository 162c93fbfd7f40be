"""Huang & Wang 2017, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer"
(arXiv 1707.01219).

Each channel's spatial map, L2-normalised, is one sample of the "neuron selectivity" distribution;
student and teacher distributions are matched by the squared maximum mean discrepancy with the
polynomial kernel k(x, y) = (x.y + c)^d, d = 2, c = 0:

    MMD^2 = mean_{i,i'} k(t_i, t_i') + mean_{j,j'} k(s_j, s_j') - 2 mean_{i,j} k(s_j, t_i)
    loss  = (1 - alpha) CE + alpha KD + beta / 2 * sum_stages MMD^2      (the paper's lambda / 2)

Channel counts may differ (MMD compares sample sets); spatial sizes must agree, so the larger map
is pooled. Paper defaults: polynomial kernel d = 2, c = 0; beta (lambda) = 50 as in CRD.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import ctx_stages, match_spatial
from methods.base import Context, Method


def poly_kernel_mean(a: torch.Tensor, b: torch.Tensor, d: int = 2, c: float = 0.0) -> torch.Tensor:
    """Mean over sample pairs of (a_i . b_j + c)^d for a: (B, N, D), b: (B, M, D); averaged over the batch."""
    return (torch.bmm(a, b.transpose(1, 2)) + c).pow(d).mean()


def nst_mmd2(f_s: torch.Tensor, f_t: torch.Tensor, d: int = 2, c: float = 0.0) -> torch.Tensor:
    f_s, f_t = match_spatial(f_s, f_t)
    s = F.normalize(f_s.flatten(2), dim=2)
    t = F.normalize(f_t.flatten(2), dim=2)
    # The teacher-teacher term is a constant for the student but kept so that MMD^2 = 0 at a match.
    return poly_kernel_mean(t, t, d, c).detach() + poly_kernel_mean(s, s, d, c) - 2 * poly_kernel_mean(s, t, d, c)


@register_method
class NST(Method):
    name = "nst"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        self.s_idx, self.t_idx = ctx_stages(ctx)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        alpha, d, c = float(self.hp["alpha"]), int(self.hp["degree"]), float(self.hp["c"])
        mmd = sum(nst_mmd2(feats.post[i], t_feats.post[j], d, c) for i, j in zip(self.s_idx, self.t_idx))
        losses = {"ce": (1.0 - alpha) * F.cross_entropy(logits, y), "nst": float(self.hp["beta"]) / 2 * mmd}
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
