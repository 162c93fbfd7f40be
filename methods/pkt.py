"""Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge Transfer" (ECCV 2018).

The student's embedding should induce the same conditional probabilities between samples as
the teacher's. With the cosine-similarity kernel K(a, b) = (cos(a, b) + 1) / 2 and
P[i, j] = K(e_i, e_j) / sum_k K(e_i, e_k) for each model,

    L_PKT = mean_{i,j} P_t[i, j] * log(P_t[i, j] / P_s[i, j])

on the pooled embeddings (any widths). CRD-benchmark default weight 30000, CE weight 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method

EPS = 1e-7


def conditional_probabilities(e: torch.Tensor) -> torch.Tensor:
    e = F.normalize(e.flatten(1), p=2, dim=1)
    k = (e @ e.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


def pkt_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    p_s = conditional_probabilities(student_emb)
    p_t = conditional_probabilities(teacher_emb)
    return (p_t * torch.log((p_t + EPS) / (p_s + EPS))).mean()


@register_method
class PKT(Method):
    name = "pkt"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        return logits, {
            "ce": F.cross_entropy(logits, y),
            "pkt": float(self.hp["beta"]) * pkt_loss(feats.pooled, t_feats.pooled),
        }
