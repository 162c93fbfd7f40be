"""The seed survey's KD with an unsupervised-data-augmentation view (Ruffy & Chahal 2019, arXiv 1912.10850).

After Xie et al. 2019, "Unsupervised Data Augmentation for Consistency Training" (UDA): every
batch is seen twice, as the normal (weakly augmented) view x and as a strongly augmented
view x' (``ctx.strong_augment``, standing in for the survey's AutoAugment CIFAR-10 policy):

    loss = 1/2 KD(x) + 1/2 KD(x') + consistency * KL(p_s(x) || p_s(x'))    (T = 1, batchmean)

with KD(v) = (1 - alpha) CE + alpha T^2 KL(p_t^T(v) || p_s^T(v)), the teacher run on each view,
and the clean prediction held fixed as the target of the consistency term (UDA's stop-gradient).
Survey defaults: T = 5, alpha = 0.5, consistency 0 (its KL term existed but was switched off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

from methods import register_method
from methods.base import Method, kd_divergence

CONSISTENCY_SPACE = FloatDistribution(0.0, 5.0)  # includes the survey's 0 and UDA's 1


def consistency_kl(clean_logits: torch.Tensor, strong_logits: torch.Tensor) -> torch.Tensor:
    """KL(p(clean) || p(strong)) at T = 1, the clean prediction a fixed target."""
    log_p_clean = F.log_softmax(clean_logits.detach(), dim=1)
    log_p_strong = F.log_softmax(strong_logits, dim=1)
    return F.kl_div(log_p_strong, log_p_clean, reduction="batchmean", log_target=True)


def strong_view(method: Method, x: torch.Tensor) -> torch.Tensor:
    if method.ctx.strong_augment is None:
        raise RuntimeError(f"method {method.name} needs ctx.strong_augment for its second view")
    return method.ctx.strong_augment(x)


@register_method
class UDA(Method):
    name = "uda"
    aliases = ("kd_uda",)
    paper = "Ruffy & Chahal 2019, The State of Knowledge Distillation for Classification (KD + UDA view)"
    year = 2019
    family = "logits"
    defaults = {"temperature": 5.0, "alpha": 0.5, "strength": 0.5, "consistency": 0.0}
    space = {"consistency": CONSISTENCY_SPACE}
    extra_cost = "a second, strongly augmented view: two student and two teacher forward passes per step"
    notes = (
        "The survey's views were crop/flip and AutoAugment's CIFAR-10 policy on PIL images; here the engine's batched strong augmentation makes the second view.",
        "The survey's (disabled) consistency term took the augmented prediction as target; this module follows UDA (clean prediction, stop-gradient).",
    )

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        x_strong = strong_view(self, x)
        logits, _ = self.student(x)
        logits_strong, _ = self.student(x_strong)
        t_logits, _ = self.teacher_forward(x)
        t_logits_strong, _ = self.teacher_forward(x_strong)
        alpha, temp = float(self.hp["alpha"]), float(self.hp["temperature"])

        def kd(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return (1.0 - alpha) * F.cross_entropy(s, y) + alpha * kd_divergence(s, t, temp)

        return logits, {
            "kd_clean": 0.5 * kd(logits, t_logits),
            "kd_strong": 0.5 * kd(logits_strong, t_logits_strong),
            "consistency": float(self.hp["consistency"]) * consistency_kl(logits, logits_strong),
        }
