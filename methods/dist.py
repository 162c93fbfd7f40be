"""Huang et al. 2022, "Knowledge Distillation from A Stronger Teacher" (DIST, NeurIPS 2022, arXiv 2205.10536).

KD's exact KL match is relaxed to a match of relations: with Y = softmax(Z / tau) (B x C),
the inter-class relation compares each sample's class distribution and the intra-class
relation each class's distribution over the batch, both with Pearson correlation rho:

    L_inter = 1 - mean_i rho(Y_s[i, :], Y_t[i, :]),   L_intra = 1 - mean_j rho(Y_s[:, j], Y_t[:, j])
    loss = alpha * CE + tau^2 * (beta * L_inter + gamma * L_intra)

The tau^2 is the authors' code's (mmrazor's DISTLoss, which the DIST repository uses); the
paper's pseudo-code leaves it out, which is the same at the paper's default tau = 1 and 1/tau^2
of the authors' loss anywhere else. Paper defaults: alpha = beta = gamma = 1, tau = 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(tau^2 L_inter, tau^2 L_intra) on softmax(z / tau), scaled as the authors' code scales them."""
    y_s = F.softmax(student_logits / tau, dim=1)
    y_t = F.softmax(teacher_logits / tau, dim=1)
    inter = 1.0 - pearson_rows(y_s, y_t).mean()
    intra = 1.0 - pearson_rows(y_s.t(), y_t.t()).mean()
    return tau**2 * inter, tau**2 * intra


@register_method
class DIST(Method):
    name = "dist"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        inter, intra = dist_terms(logits, t_logits, float(self.hp["temperature"]))
        return logits, {
            "ce": float(self.hp["ce_weight"]) * F.cross_entropy(logits, y),
            "inter": float(self.hp["beta"]) * inter,
            "intra": float(self.hp["gamma"]) * intra,
        }
