"""The seed survey's "simple feature distillation" (Ruffy & Chahal 2019, arXiv 1912.10850; mode ``fd``).

Cross-entropy plus, for the stem and each stage, the largest absolute difference between the
student's and the teacher's features; no KD term:

    loss = CE(s, y) + beta * sum_l max_{b, c} | g(s_l)[b, c] - g(t_l)[b, c] |

with g the per-channel global max pooling the survey's code applied before comparing, and
the features taken before each stage's last activation (as its code read them). Survey
default beta = 1. Where channel counts differ, a 1x1 conv connector maps the student feature
to the teacher's channels (the survey built such connectors but only ran equal widths);
global pooling makes spatial sizes irrelevant; stages pair by relative depth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods.base import Context, Method
from methods.pkd import pair_stages


def max_abs_difference(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """max over batch and channels of |global-max-pool(s) - global-max-pool(t)|."""
    s = F.adaptive_max_pool2d(student_feat, 1).flatten(1)
    t = F.adaptive_max_pool2d(teacher_feat, 1).flatten(1)
    return (s - t).abs().max()


@register_method
class SFD(Method):
    name = "sfd"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        # The stem (index 0) pairs with the stem, then the stages by relative depth.
        self.pairs = [(0, 0), *pair_stages(len(ctx.student.pre) - 1, len(ctx.teacher.pre) - 1)]
        self.connectors = nn.ModuleList(
            nn.Identity() if ctx.student.pre[i][0] == ctx.teacher.pre[j][0]
            else nn.Conv2d(ctx.student.pre[i][0], ctx.teacher.pre[j][0], 1, bias=False)
            for i, j in self.pairs
        )

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        fd = sum(max_abs_difference(conn(feats.pre[i]), t_feats.pre[j]) for conn, (i, j) in zip(self.connectors, self.pairs))
        return logits, {"ce": F.cross_entropy(logits, y), "fd": float(self.hp["beta"]) * fd}
