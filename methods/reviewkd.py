"""Chen, Liu, Zhao & Jia 2021, "Distilling Knowledge via Knowledge Review" (CVPR 2021, arXiv 2104.09044).

The student's stage features (and its pooled embedding, as a 1x1 map) are fused from the deepest
to the shallowest by attention-based fusion (ABF): each level is projected (1x1 conv + BN) to a
common width, fused with the upsampled residual of the level below it through two attention maps
(1x1 conv on the concatenation, sigmoid), and mapped (3x3 conv + BN) to the teacher's channels at
the teacher's size. The hierarchical context loss (HCL) compares each fused output with the
teacher's pre-ReLU stage feature (or pooled embedding) by MSE at full resolution and after
pyramid pooling to 4x4, 2x2, 1x1, each coarser level weighted half the previous, normalised:

    HCL(f_s, f_t) = [mse + sum_l 2^-l mse(pool_l f_s, pool_l f_t)] / (1 + sum_l 2^-l)
    loss          = CE + beta * min(epochs done / warmup, 1) * sum_levels HCL

Paper defaults (the authors' CIFAR-100 code): beta = 1.0, warm-up 20 of 240 epochs (kept as that
fraction of the budget), fusion width min(512, student's last width), student features after their
ReLU, teacher features before it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import ctx_stages
from methods.base import Context, Method


class ABF(nn.Module):
    """Attention-based fusion of one student level with the residual coming from the deeper one."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, c_mid, 1, bias=False), nn.BatchNorm2d(c_mid))
        self.conv2 = nn.Sequential(nn.Conv2d(c_mid, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.att = nn.Sequential(nn.Conv2d(2 * c_mid, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, out_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1(x)
        if self.att is not None and residual is not None:
            residual = F.interpolate(residual, x.shape[-2:], mode="nearest")
            z = self.att(torch.cat([x, residual], 1))
            x = x * z[:, :1] + residual * z[:, 1:2]
        if tuple(x.shape[-2:]) != tuple(out_hw):
            x = F.interpolate(x, out_hw, mode="nearest")
        return self.conv2(x), x


def hcl_loss(f_s: torch.Tensor, f_t: torch.Tensor, levels: tuple[int, ...] = (4, 2, 1)) -> torch.Tensor:
    loss = F.mse_loss(f_s, f_t)
    weight, total = 1.0, 1.0
    for level in levels:
        if level >= f_s.shape[-2]:
            continue  # pooling to a size not smaller than the map adds nothing
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(f_s, level), F.adaptive_avg_pool2d(f_t, level))
        total += weight
    return loss / total


@register_method
class ReviewKD(Method):
    name = "reviewkd"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        self.s_idx, self.t_idx = ctx_stages(ctx)
        s_channels = [ctx.student.post[i][0] for i in self.s_idx] + [ctx.student.pooled]
        t_channels = [ctx.teacher.pre[j][0] for j in self.t_idx] + [ctx.teacher.pooled]
        self.t_sizes = [tuple(ctx.teacher.pre[j][1:]) for j in self.t_idx] + [(1, 1)]
        mid = min(512, ctx.student.pooled)
        # abfs[0] handles the deepest level (the pooled embedding), with nothing to fuse.
        self.abfs = nn.ModuleList(
            ABF(c_s, mid, c_t, fuse=n > 0)
            for n, (c_s, c_t) in enumerate(zip(reversed(s_channels), reversed(t_channels)))
        )
        self.num_train = max(1, ctx.num_train)
        self._seen = 0

    def warmup_factor(self, epochs_done: float) -> float:
        """min(epochs done / warm-up epochs, 1); ``epochs_done`` is fractional (samples seen / train size)."""
        warmup = float(self.hp["warmup_fraction"]) * self.ctx.epochs
        return 1.0 if warmup <= 0 else min(epochs_done / warmup, 1.0)

    def fused(self, feats) -> list[torch.Tensor]:
        """Fused student levels, shallowest first, each at the teacher's size and width."""
        levels = [feats.post[i] for i in self.s_idx] + [feats.pooled[:, :, None, None]]
        outs: list[torch.Tensor] = []
        residual = None
        for abf, x, hw in zip(self.abfs, reversed(levels), reversed(self.t_sizes)):
            out, residual = abf(x, residual, hw)
            outs.insert(0, out)
        return outs

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        targets = [t_feats.pre[j] for j in self.t_idx] + [t_feats.pooled[:, :, None, None]]
        hcl = sum(hcl_loss(f_s, f_t) for f_s, f_t in zip(self.fused(feats), targets))
        done = self._seen / self.num_train  # epochs completed before this step, fractional
        if self.training:
            self._seen += x.shape[0]
        return logits, {
            "ce": F.cross_entropy(logits, y),
            "reviewkd": float(self.hp["beta"]) * self.warmup_factor(done) * hcl,
        }
