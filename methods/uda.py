"""The seed survey's KD with an unsupervised-data-augmentation view (Ruffy & Chahal 2019, arXiv 1912.10850).

After Xie et al. 2019, "Unsupervised Data Augmentation for Consistency Training" (UDA): every
batch is seen twice, as the normal (weakly augmented) view x and as a strongly augmented
view x': by default the engine's ``strong_augment``; the option ``second_view`` names an
augmentation policy instead (``autoaugment-cifar10``, the survey's, for its as-published arm):

    loss = 1/2 KD(x) + 1/2 KD(x') + consistency * KL(p_s(x) || p_s(x'))    (T = 1, batchmean)

with KD(v) = (1 - alpha) CE + alpha T^2 KL(p_t^T(v) || p_s^T(v)), the teacher run on each view,
and the clean prediction held fixed as the target of the consistency term (UDA's stop-gradient).
Survey defaults: T = 5, alpha = 0.5, consistency 0 (its KL term existed but was switched off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from audit.engine.augment import strong_augment
from audit.engine.policies import get_policy
from methods import register_method
from methods.base import Method, kd_divergence


def consistency_kl(clean_logits: torch.Tensor, strong_logits: torch.Tensor) -> torch.Tensor:
    """KL(p(clean) || p(strong)) at T = 1, the clean prediction a fixed target."""
    log_p_clean = F.log_softmax(clean_logits.detach(), dim=1)
    log_p_strong = F.log_softmax(strong_logits, dim=1)
    return F.kl_div(log_p_strong, log_p_clean, reduction="batchmean", log_target=True)


class TwoViews:
    """Methods that see every batch twice: ``second_view`` is the strongly augmented one."""

    def second_view(self, x: torch.Tensor) -> torch.Tensor:
        """Drawn from the run's generator, so a run stays a pure function of its seed."""
        if self.ctx.generator is None:
            raise RuntimeError(f"method {self.name} needs the run's generator (ctx.generator) for its second view")
        policy = self.ctx.options.get("second_view")
        if policy is not None:
            if self.ctx.info is None:
                raise RuntimeError(f"method {self.name} needs the data set's info (ctx.info) for its {policy} view")
            return get_policy(policy)(x, self.ctx.generator, self.ctx.info)
        return strong_augment(x, self.ctx.generator, hflip=self.ctx.hflip)


@register_method
class UDA(TwoViews, Method):
    name = "uda"

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        x_strong = self.second_view(x)
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
