"""Pieces several feature-distillation methods share: stage matching, size adaptation, connectors
and the wrapper that lets ``Method.pretrain`` train a stage of its own.

Not a method: the registry imports this module but it registers nothing.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Context, FeatureShapes


def matched_stages(student: FeatureShapes, teacher: FeatureShapes) -> tuple[list[int], list[int]]:
    """Indices into ``Features.pre/post`` of the last k stages of each model, k = the fewer stages.

    Index 0 is the stem, so stages are 1..n; deep stages carry the knowledge papers transfer and
    pairs with different depths (a 4-stage VGG teacher, a 3-stage ResNet student) still line up.
    """
    n_s, n_t = len(student.post) - 1, len(teacher.post) - 1
    k = min(n_s, n_t)
    return list(range(n_s - k + 1, n_s + 1)), list(range(n_t - k + 1, n_t + 1))


def ctx_stages(ctx: Context) -> tuple[list[int], list[int]]:
    assert ctx.teacher is not None, "feature methods need a teacher"
    return matched_stages(ctx.student, ctx.teacher)


def pool_to(x: torch.Tensor, hw: tuple[int, ...]) -> torch.Tensor:
    """Average-pool ``x`` down to spatial size ``hw`` (a no-op when it already has it)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.adaptive_avg_pool2d(x, tuple(hw))


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool whichever map is larger to the other's size (as the CRD benchmark does)."""
    ha, hb = a.shape[-2] * a.shape[-1], b.shape[-2] * b.shape[-1]
    if ha > hb:
        return pool_to(a, b.shape[-2:]), b
    if hb > ha:
        return a, pool_to(b, a.shape[-2:])
    if a.shape[-2:] != b.shape[-2:]:  # same area, different aspect: pool both to the common minimum
        hw = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
        return pool_to(a, hw), pool_to(b, hw)
    return a, b


def conv_bn_connector(c_in: int, c_out: int) -> nn.Sequential:
    """1x1 conv + BN, initialised as in the AB and OFD papers' code (He-normal by fan-out, BN 1/0)."""
    conv = nn.Conv2d(c_in, c_out, 1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / c_out))
    bn = nn.BatchNorm2d(c_out)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    return nn.Sequential(conv, bn)


def init_epochs(fraction: float, budget: int) -> int:
    """Epochs of a pre-training stage taken out of ``budget``: at least one, and one left for the main stage.

    Returns 0 when the budget is a single epoch (no room for a second stage).
    """
    if budget < 2:
        return 0
    return int(min(max(1, round(float(fraction) * budget)), budget - 1))


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class PretrainStage(nn.Module):
    """An extra training stage: the modules it trains and the loss it minimises.

    ``fit`` (the engine's trainer) needs ``forward_train`` and ``trainable_parameters``; the teacher
    is never a submodule here, so ``train()`` on this stage leaves it in eval mode.
    """

    def __init__(self, parts: dict[str, nn.Module], loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self._loss = loss

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._loss(x, y, index)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
