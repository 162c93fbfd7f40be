"""Zhao et al. 2022, "Decoupled Knowledge Distillation" (CVPR 2022, arXiv 2203.08679).

KD's KL splits into a target-class term and a non-target term. With p = softmax(z / T),
b = (p_gt, 1 - p_gt) and p_hat the softmax over the non-target classes only:

    TCKD = KL(b_t || b_s),   NCKD = KL(p_hat_t || p_hat_s)
    loss = CE(s, y) + w(epoch) * T^2 * (alpha * TCKD + beta * NCKD)      (batch mean)

Paper defaults (CIFAR-100): alpha = 1, beta = 8, T = 4, CE weight 1, and w rising linearly
from 1/20 to 1 over the first 20 of 240 epochs ("warm-up", as in mdistiller's DKD).

The warm-up is scaled to the study's budget: it lasts ``warmup / paper_epochs`` of the
run's epochs (20/240 of them by default; the budget's epochs are ``ctx.epochs``). Progress is counted in images seen, so w = min(epochs_done / warmup_epochs, 1) with
fractional epochs (the current batch included): at each epoch's end it equals mdistiller's
per-epoch ``min(epoch / warmup, 1)``, and short budgets, whose warm-up is shorter than one
epoch, still get a ramp instead of none.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods.base import Context, Method


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each a batch mean scaled by T^2; computed in log space for stability."""
    b, c = student_logits.shape
    gt = F.one_hot(target, c).bool()
    z_s, z_t = student_logits / temperature, teacher_logits / temperature
    # Non-target logits as a (B, C-1) block: no masking with -inf, so no NaN anywhere.
    rest_s, rest_t = z_s[~gt].view(b, c - 1), z_t[~gt].view(b, c - 1)

    def binary(z: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        # (log p_gt, log(1 - p_gt)) of softmax(z): both share the log-partition of all classes.
        log_z = torch.logsumexp(z, dim=1)
        return torch.stack([z[gt] - log_z, torch.logsumexp(rest, dim=1) - log_z], dim=1)

    b_s, b_t = binary(z_s, rest_s), binary(z_t, rest_t)
    tckd = (b_t.exp() * (b_t - b_s)).sum(1).mean()
    log_q_s, log_q_t = F.log_softmax(rest_s, dim=1), F.log_softmax(rest_t, dim=1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum(1).mean()
    return tckd * temperature**2, nckd * temperature**2


@register_method
class DKD(Method):
    name = "dkd"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        self.images_seen = 0

    def warmup_factor(self) -> float:
        """min(epochs done / warm-up epochs, 1), the warm-up scaled to the budget."""
        warm = float(self.hp["warmup"]) * self.ctx.epochs / float(self.hp["paper_epochs"])
        done = self.images_seen / max(1, self.ctx.num_train)
        return 1.0 if warm <= 0 else min(done / warm, 1.0)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, _ = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        self.images_seen += x.shape[0]  # this batch counts: the first step gets a small, nonzero weight
        w = self.warmup_factor()
        tckd, nckd = dkd_terms(logits, t_logits, y, float(self.hp["temperature"]))
        return logits, {
            "ce": float(self.hp["ce_weight"]) * F.cross_entropy(logits, y),
            "dkd": w * (float(self.hp["dkd_alpha"]) * tckd + float(self.hp["dkd_beta"]) * nckd),
        }
