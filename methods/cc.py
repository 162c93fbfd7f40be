"""Peng et al. 2019, "Correlation Congruence for Knowledge Distillation" (ICCV 2019, arXiv 1904.01802).

Beyond instance-level congruence, the correlation between instances must match. Features
are embedded and L2-normalised, and the correlation matrix uses the Gaussian RBF kernel
approximated by its P-order Taylor series (for unit vectors ||a - b||^2 = 2 - 2 a.b):

    k(a, b) = exp(-gamma ||a - b||^2) ~ sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (a . b)^p
    L_CC = 1 / B^2 * ||psi(F_t) - psi(F_s)||_F^2

Paper kernel defaults: gamma = 0.4, P = 2. As in the CRD benchmark's "Correlation", both
pooled embeddings pass through linear heads to 128-d (this adapts unequal widths; both
heads are trained with the student), CE weight 1 and no KD term.

``form = "crd"`` is what the CRD benchmark's code computes under this name instead (its
``distiller_zoo/CC.py``, weight 0.02): with d_i = |e_s,i - e_t,i| on plain (not normalised)
linear embeddings, mean_i sum_k d_i,k d_i+1,k over neighbouring samples of the batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods.base import Context, Method
from methods.crd import Embed


def correlation_matrix(e: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """Taylor-approximated Gaussian RBF kernel matrix of the L2-normalised rows of ``e``."""
    e = F.normalize(e.flatten(1), p=2, dim=1)
    sim = e @ e.t()
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim.pow(p) for p in range(order + 1))


FORMS = ("taylor_rbf", "crd")


def cc_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    diff = correlation_matrix(student_emb, gamma, order) - correlation_matrix(teacher_emb, gamma, order)
    return diff.pow(2).sum() / student_emb.shape[0] ** 2


def crd_correlation(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """The CRD benchmark's "Correlation": mean over neighbouring samples of sum_k |d_i,k| |d_i+1,k|."""
    d = (student_emb - teacher_emb).abs()
    return (d[:-1] * d[1:]).sum(1).mean()


@register_method
class CC(Method):
    name = "cc"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        dim, self.form = int(self.hp["feat_dim"]), str(self.hp["form"])
        if self.form not in FORMS:
            raise ValueError(f"cc form must be one of {FORMS}, got {self.form!r}")
        # The CRD benchmark's form reads plain linear embeddings (its LinearEmbed), not normalised ones.
        head = Embed if self.form == "taylor_rbf" else (lambda d_in, d_out: nn.Sequential(nn.Flatten(), nn.Linear(d_in, d_out)))
        self.embed_s = head(ctx.student.pooled, dim)
        self.embed_t = head(ctx.teacher.pooled, dim)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        alpha = float(self.hp["alpha"])
        e_s, e_t = self.embed_s(feats.pooled), self.embed_t(t_feats.pooled)
        cc = crd_correlation(e_s, e_t) if self.form == "crd" else cc_loss(e_s, e_t, float(self.hp["gamma"]), int(self.hp["order"]))
        losses = {"ce": (1.0 - alpha) * F.cross_entropy(logits, y), "cc": float(self.hp["beta"]) * cc}
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
