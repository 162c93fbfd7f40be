"""The student alone: cross-entropy, no teacher. The reference every KD gain is measured from."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method


@register_method
class NoKD(Method):
    name = "nokd"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        return logits, {"ce": F.cross_entropy(logits, y)}
