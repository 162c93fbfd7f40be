"""Kim, Park & Kwak 2018, "Paraphrasing Complex Network: Network Compression via Factor Transfer"
(NeurIPS 2018, arXiv 1802.04977).

A paraphraser (convolutional auto-encoder) is first trained without labels to reconstruct the
teacher's last-stage feature; its encoder output, with k = 0.5 times the teacher's channels, is the
teacher factor F_T. A translator (three convs) on the student's last stage gives the student factor
F_S, trained with

    loss = (1 - alpha) CE + alpha KD + beta * mean | F_S / |F_S|_2 - F_T / |F_T|_2 |      (p = 1)

The paraphraser's training runs inside the budget through ``pretrain`` (those epochs count as
used); it is then frozen in eval mode. Defaults (the authors' code, Factor-Transfer-pytorch's
``train_student.py``): k = 0.5, p = 1, beta = 500, FT alone (alpha = 0). ``factor = "attention"``
compares what the CRD benchmark's FactorTransfer compares instead: the L2-normalised channel mean
of the squared factor (an attention map of it), with its weight 200.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import PretrainStage, freeze, init_epochs, match_spatial
from methods.base import Context, Method


def _conv_block(c_in: int, c_out: int, transpose: bool = False) -> list[nn.Module]:
    conv = nn.ConvTranspose2d(c_in, c_out, 3, 1, 1) if transpose else nn.Conv2d(c_in, c_out, 3, 1, 1)
    return [conv, nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1)]


class Paraphraser(nn.Module):
    """Encoder C -> C -> kC -> kC and a mirrored transposed-conv decoder back to C."""

    def __init__(self, channels: int, rate: float) -> None:
        super().__init__()
        factor = max(1, int(channels * rate))
        self.encoder = nn.Sequential(*_conv_block(channels, channels), *_conv_block(channels, factor), *_conv_block(factor, factor))
        self.decoder = nn.Sequential(
            *_conv_block(factor, factor, True), *_conv_block(factor, channels, True),
            nn.ConvTranspose2d(channels, channels, 3, 1, 1),  # linear output: the target may be negative
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self.encoder(x)
        return factor, self.decoder(factor)


class Translator(nn.Module):
    def __init__(self, c_in: int, factor: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*_conv_block(c_in, c_in), *_conv_block(c_in, factor), *_conv_block(factor, factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


FACTOR_FORMS = ("flat", "attention")


def ft_loss(factor_s: torch.Tensor, factor_t: torch.Tensor, p: int = 1, form: str = "flat") -> torch.Tensor:
    """Mean |F_S/|F_S| - F_T/|F_T||^p over batch and elements: factors flattened per sample
    (``flat``, the paper's), or each factor's channel mean of squares (``attention``, the CRD benchmark's)."""
    if form not in FACTOR_FORMS:
        raise ValueError(f"ft factor must be one of {FACTOR_FORMS}, got {form!r}")
    factor_s, factor_t = match_spatial(factor_s, factor_t)
    if form == "attention":
        factor_s, factor_t = factor_s.pow(2).mean(1), factor_t.pow(2).mean(1)
    diff = F.normalize(factor_s.flatten(1), dim=1) - F.normalize(factor_t.flatten(1), dim=1)
    return diff.abs().pow(p).mean()


@register_method
class FT(Method):
    name = "ft"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        t_channels = ctx.teacher.post[-1][0]
        self.paraphraser = Paraphraser(t_channels, float(self.hp["rate"]))
        factor = max(1, int(t_channels * float(self.hp["rate"])))
        self.translator = Translator(ctx.student.post[-1][0], factor)
        self._paraphraser_frozen = False

    def train(self, mode: bool = True) -> "FT":
        super().train(mode)
        if self._paraphraser_frozen:
            self.paraphraser.eval()  # a trained paraphraser is a fixed target, like the teacher
        return self

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        _, t_feats = self.teacher_forward(x)
        target = t_feats.post[-1]
        _, rec = self.paraphraser(target)
        return F.mse_loss(rec, target)

    def pretrain(self, fit: Callable[[nn.Module, int], None], epochs: int) -> int:
        n = init_epochs(float(self.hp["init_fraction"]), epochs)
        if n > 0:
            stage = PretrainStage({"paraphraser": self.paraphraser}, lambda x, y, index: (x.new_zeros(()), {"rec": self.reconstruction_loss(x)}))
            fit(stage, n)
        freeze(self.paraphraser)
        self._paraphraser_frozen = True
        self.paraphraser.eval()
        return n

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        with torch.no_grad():
            factor_t = self.paraphraser.encoder(t_feats.post[-1])
        factor_s = self.translator(feats.post[-1])
        alpha = float(self.hp["alpha"])
        losses = {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "ft": float(self.hp["beta"]) * ft_loss(factor_s, factor_t, int(self.hp["p"]), str(self.hp["factor"])),
        }
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
