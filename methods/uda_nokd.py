"""The seed survey's UDA-NOKD (Ruffy & Chahal 2019, arXiv 1912.10850): ``uda`` without a teacher.

The same two views (normal x and strongly augmented x'), cross-entropy on both, plus the
T = 1 consistency term with the clean prediction as a fixed target:

    loss = 1/2 CE(x) + 1/2 CE(x') + consistency * KL(p_s(x) || p_s(x'))

Survey default consistency 0 (no code for this variant was published).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method
from methods.uda import TwoViews, consistency_kl


@register_method
class UDANoKD(TwoViews, Method):
    name = "uda_nokd"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        x_strong = self.second_view(x)
        logits, _ = self.student(x)
        logits_strong, _ = self.student(x_strong)
        return logits, {
            "ce_clean": 0.5 * F.cross_entropy(logits, y),
            "ce_strong": 0.5 * F.cross_entropy(logits_strong, y),
            "consistency": float(self.hp["consistency"]) * consistency_kl(logits, logits_strong),
        }
