"""Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation" (ICCV 2019, arXiv 1907.09682).

Samples that the teacher sees as similar should look similar to the student. For a stage's
activations Q (B x C*H*W): G = row-L2-normalise(Q Q^T), and

    L_SP = gamma / B^2 * ||G_t - G_s||_F^2

G is B x B, so any widths and sizes can be compared without adapters. Paper/CRD defaults:
gamma = 3000 on the last stage's output, CE weight 1, no KD term.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method


def similarity(q: torch.Tensor) -> torch.Tensor:
    q = q.flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)


def sp_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    b = student_feat.shape[0]
    return (similarity(student_feat) - similarity(teacher_feat)).pow(2).sum() / b**2


@register_method
class SP(Method):
    name = "sp"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        if self.hp["stages"] == "last":
            pairs = [(feats.post[-1], t_feats.post[-1])]
        else:
            # Pair stages from the last one back, as many as the shallower network has (stem excluded).
            n = min(len(feats.post), len(t_feats.post)) - 1
            pairs = list(zip(feats.post[-n:], t_feats.post[-n:]))
        loss = sum(sp_loss(s, t) for s, t in pairs)
        return logits, {"ce": F.cross_entropy(logits, y), "sp": float(self.hp["gamma"]) * loss}
