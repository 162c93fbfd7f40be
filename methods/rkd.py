"""Park et al. 2019, "Relational Knowledge Distillation" (CVPR 2019, arXiv 1904.05068).

The student's embedding must reproduce the teacher's pairwise distances and triplet angles:

    psi_D(i, j) = ||e_i - e_j|| / mu,  mu = mean distance over pairs i != j
    psi_A(i, j, k) = cos angle at e_j between e_i and e_k
    L = w_d * mean Huber(psi_D^s - psi_D^t) + w_a * mean Huber(psi_A^s - psi_A^t)

on the pooled embeddings (any widths: only relations are compared). Paper/CRD-benchmark
defaults: w_d = 25, w_a = 50, Huber delta 1, CE weight 1 and no KD term (alpha = 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method


def normalized_distances(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix divided by the mean off-diagonal distance."""
    # Exact pairwise differences (not the matmul shortcut): the diagonal stays exactly 0.
    d = torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")
    off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    # Guard the all-equal batch (mean 0): leave the zeros as they are.
    return d / d[off].mean().clamp_min(1e-12)


def angles(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at vertex j between i and k: A[j, i, k] = <u(j->i), u(j->k)>."""
    u = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # u[j, i] = unit(e_i - e_j)
    return torch.bmm(u, u.transpose(1, 2))


def rkd_terms(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s, t = student_emb.flatten(1), teacher_emb.flatten(1).detach()
    distance = F.smooth_l1_loss(normalized_distances(s), normalized_distances(t))
    angle = F.smooth_l1_loss(angles(s), angles(t))
    return distance, angle


@register_method
class RKD(Method):
    name = "rkd"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        distance, angle = rkd_terms(feats.pooled, t_feats.pooled)
        losses = {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "rkd_distance": float(self.hp["w_distance"]) * distance,
            "rkd_angle": float(self.hp["w_angle"]) * angle,
        }
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
