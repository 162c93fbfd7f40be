"""The seed survey's feature-matching baseline "PKD" (Ruffy & Chahal 2019, arXiv 1912.10850).

Named after Patient KD (Sun et al. 2019, for BERT), whose patience loss it borrows: KD plus
the mean squared error between the student's and the teacher's stage outputs, flattened and
concatenated,

    loss = (1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T) + beta * MSE(cat_i s_i, cat_i t_i)

over the stages' post-activation outputs (the stem excluded). Survey defaults: beta = 10,
T = 5, alpha = 0.5. The survey matched equal shapes only; where a pair's shapes differ, a
1x1 conv + BN connector maps the student stage to the teacher's channels after average
pooling (or nearest upsampling) to its spatial size, and networks with different stage
counts are paired by relative depth (see ``pair_stages``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods.base import Context, Method, kd_divergence


def pair_stages(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Pair stage indices (1-based, as in ``Features``) of two networks by relative depth.

    Each stage of the shallower network takes the stage of the deeper one at the same depth
    fraction (rounded up), so the last stages always meet.
    """
    if n_student <= n_teacher:
        return [(j, math.ceil(j * n_teacher / n_student)) for j in range(1, n_student + 1)]
    return [(math.ceil(i * n_student / n_teacher), i) for i in range(1, n_teacher + 1)]


def resize(x: torch.Tensor, hw: tuple[int, ...]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    if x.shape[-1] >= hw[-1] and x.shape[-2] >= hw[-2]:
        return F.adaptive_avg_pool2d(x, hw)
    return F.interpolate(x, size=hw, mode="nearest")


class Connector(nn.Module):
    """Student stage -> teacher stage shape: resize space, then a 1x1 conv + BN for channels."""

    def __init__(self, s_shape: tuple[int, ...], t_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.hw = tuple(t_shape[1:])
        self.conv = nn.Conv2d(s_shape[0], t_shape[0], 1, bias=False)
        self.bn = nn.BatchNorm2d(t_shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(resize(x, self.hw)))


def build_connectors(pairs: list[tuple[int, int]], s_shapes: list[tuple[int, ...]], t_shapes: list[tuple[int, ...]]) -> nn.ModuleList:
    """One connector per pair whose shapes differ; ``nn.Identity`` where they match."""
    return nn.ModuleList(
        nn.Identity() if tuple(s_shapes[i]) == tuple(t_shapes[j]) else Connector(s_shapes[i], t_shapes[j])
        for i, j in pairs
    )


def concat_mse(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
    """MSE between the per-sample concatenations of the flattened features."""
    s = torch.cat([f.flatten(1) for f in student_feats], dim=1)
    t = torch.cat([f.flatten(1) for f in teacher_feats], dim=1)
    return F.mse_loss(s, t)


@register_method
class PKD(Method):
    name = "pkd"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        self.pairs = pair_stages(len(ctx.student.post) - 1, len(ctx.teacher.post) - 1)
        self.connectors = build_connectors(self.pairs, ctx.student.post, ctx.teacher.post)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        s_list = [conn(feats.post[i]) for conn, (i, _) in zip(self.connectors, self.pairs)]
        t_list = [t_feats.post[j] for _, j in self.pairs]
        return logits, {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "kd": alpha * kd_divergence(logits, t_logits, float(self.hp["temperature"])),
            "patience": float(self.hp["beta"]) * concat_mse(s_list, t_list),
        }
