"""Sun et al. 2024, "Logit Standardization in Knowledge Distillation" (CVPR 2024, arXiv 2403.01427).

KD on z-score standardised logits: Z(z) = (z - mean(z)) / std(z) per sample, so the student
matches the teacher's logit relations, not their range. As a KD variant:

    loss = ce_weight * CE(s, y) + kd_weight * T^2 * KL(softmax(Z(t) / T) || softmax(Z(s) / T))

with std the unbiased (n - 1) standard deviation over the classes, as the authors' code computes
it (``torch.std``; the paper's Algorithm 1 writes the population std, the same loss at a base
temperature sqrt(C/(C-1)) times larger) and T the "base temperature". Paper defaults (CIFAR-100,
KD + logit standardisation): T = 2, kd_weight = 9, ce_weight = 1 (the official repository's
``--base-temp 2 --kd-weight 9``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from methods import register_method
from methods.base import Method

EPS = 1e-7


def standardize(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample z-score over the classes (unbiased std, as the authors' code computes it)."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + EPS)


def lskd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    log_p_s = F.log_softmax(standardize(student_logits) / temperature, dim=1)
    log_p_t = F.log_softmax(standardize(teacher_logits) / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


@register_method
class LSKD(Method):
    name = "lskd"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        return logits, {
            "ce": float(self.hp["ce_weight"]) * F.cross_entropy(logits, y),
            "kd": float(self.hp["kd_weight"]) * lskd_divergence(logits, t_logits, float(self.hp["temperature"])),
        }
