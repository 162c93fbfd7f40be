"""Tian, Krishnan & Isola 2020, "Contrastive Representation Distillation" (ICLR 2020, arXiv 1910.10699).

Linear heads embed the student's and the teacher's pooled features into a shared 128-d unit
sphere. Each sample's teacher embedding is a positive for its student embedding (and vice
versa); K negatives are embeddings of other samples kept in two memory banks (one per
model, N x 128, updated with momentum). With h(v, m) = exp(v . m / tau) / Z and the NCE
noise probability 1/N,

    L_NCE = -[log h_pos / (h_pos + K/N) + sum_neg log (K/N) / (h_neg + K/N)] / B

summed for both anchors (student against the teacher bank, teacher against the student
bank). Z is fixed on the first batch as mean(exp(v . m / tau)) * N.
Paper/benchmark defaults: 128-d heads, K = 16384, tau = 0.07, momentum 0.5, CE weight 1,
CRD weight 0.8, no KD term.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods.base import Context, Method

EPS = 1e-7
# Redraws of negatives that hit the anchor itself or its class. A fixed count (no data-dependent
# early exit) keeps the step free of host synchronisation; with 10 classes about 1e-4 of the
# negatives are still same-class afterwards, which the CRD code's "relax" mode allows anyway.
_REDRAWS = 4


class Embed(nn.Module):
    """Linear projection followed by L2 normalisation (the CRD benchmark's embedding head)."""

    def __init__(self, dim_in: int, dim_out: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), p=2, dim=1)


def nce_loss(scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """NCE loss of (B, K+1) normalised scores, column 0 the positive."""
    k = scores.shape[1] - 1
    noise = k / float(n_data)
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + EPS))
    log_d0 = torch.log(noise / (neg + noise + EPS))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


class ContrastMemory(nn.Module):
    """Two momentum memory banks of unit embeddings indexed by training-sample index."""

    def __init__(self, dim: int, n_data: int, k: int, tau: float, momentum: float) -> None:
        super().__init__()
        self.n_data, self.k, self.tau, self.momentum = n_data, k, tau, momentum
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_s", torch.rand(n_data, dim).mul_(2 * stdv).sub_(stdv))
        self.register_buffer("memory_t", torch.rand(n_data, dim).mul_(2 * stdv).sub_(stdv))
        # Labels as samples are seen (-1 unknown): negatives come from other classes.
        self.register_buffer("labels", torch.full((n_data,), -1, dtype=torch.long))
        # Normalising constants, set on the first batch (a Python flag avoids a device sync per step).
        self.register_buffer("z", torch.ones(2))
        self.z_set = False

    def sample(self, index: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, K+1) bank indices: the sample itself, then K negatives of other classes."""
        b = index.shape[0]
        neg = torch.randint(0, self.n_data, (b, self.k), device=index.device)
        for _ in range(_REDRAWS):
            bad = (neg == index[:, None]) | (self.labels[neg] == y[:, None])
            neg = torch.where(bad, torch.randint_like(neg, 0, self.n_data), neg)
        return torch.cat([index[:, None], neg], dim=1)

    def forward(self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.labels[index] = y
        idx = self.sample(index, y)
        # Score each anchor against the whole other bank with one matmul, then pick the K+1
        # columns: the same numbers as gathering (B, K+1, D) bank rows, far less memory traffic.
        # The banks are copied because the update below would overwrite what backward needs.
        mem_s, mem_t = self.memory_s.clone(), self.memory_t.clone()
        out_s = torch.exp((v_s @ mem_t.t()).gather(1, idx) / self.tau)  # student anchors
        out_t = torch.exp((v_t @ mem_s.t()).gather(1, idx) / self.tau)  # teacher anchors
        if not self.z_set:
            self.z.copy_(torch.stack([out_s.mean(), out_t.mean()]).detach() * self.n_data)
            self.z_set = True
        out_s, out_t = out_s / self.z[0], out_t / self.z[1]
        with torch.no_grad():
            for bank, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                mixed = bank[index] * self.momentum + v.detach() * (1.0 - self.momentum)
                bank.index_copy_(0, index, F.normalize(mixed, p=2, dim=1))
        return out_s, out_t


@register_method
class CRD(Method):
    name = "crd"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        dim = int(self.hp["feat_dim"])
        self.embed_s = Embed(ctx.student.pooled, dim)
        self.embed_t = Embed(ctx.teacher.pooled, dim)
        k = min(int(self.hp["nce_k"]), ctx.num_train - 1)
        self.memory = ContrastMemory(dim, ctx.num_train, k, float(self.hp["nce_t"]), float(self.hp["nce_momentum"]))

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        _, t_feats = self.teacher_forward(x)
        v_s, v_t = self.embed_s(feats.pooled), self.embed_t(t_feats.pooled)
        out_s, out_t = self.memory(v_s, v_t, index, y)
        n = self.memory.n_data
        return logits, {
            "ce": F.cross_entropy(logits, y),
            "crd": float(self.hp["beta"]) * (nce_loss(out_s, n) + nce_loss(out_t, n)),
        }
