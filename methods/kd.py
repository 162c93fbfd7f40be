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

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        return logits, {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "kd": alpha * kd_divergence(logits, t_logits, float(self.hp["temperature"])),
        }
