"""Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv 1503.02531).

loss = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)), batchmean.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method, kd_divergence


@register_method
class KD(Method):
    name = "kd"
    aliases = ("hinton", "classical_kd")
    paper = "Hinton, Vinyals & Dean 2015, Distilling the Knowledge in a Neural Network"
    year = 2015
    family = "logits"
    # The paper gives no single setting; T=4 and alpha=0.9 are the CRD benchmark's.
    defaults = {"temperature": 4.0, "alpha": 0.9, "strength": 0.5}
    notes = (
        "The seed survey hard-coded T=5, alpha=0.5 and summed the KL before dividing by the batch (same as batchmean).",
        "The CRD benchmark weights CE by 0.1 and KD by 0.9 rather than (1 - alpha) and alpha (the same at alpha=0.9).",
    )

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        return logits, {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "kd": alpha * kd_divergence(logits, t_logits, float(self.hp["temperature"])),
        }
