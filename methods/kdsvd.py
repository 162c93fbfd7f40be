"""Lee, Kim & Song 2018, "Self-supervised Knowledge Distillation Using Singular Value
Decomposition" (ECCV 2018, arXiv 1807.06819).

Each stage feature (C x H x W), reshaped to HW x C, is compressed by a truncated SVD: the teacher
keeps its top-k right singular vectors V_t (C x k) and singular values, the student its top k + 3.
Each teacher vector is paired with the student vector of largest |cosine| and that vector's sign
is flipped to agree (sign alignment); both sets are weighted by the teacher's L2-normalised
singular values. Knowledge is the radial-basis correlation between consecutive stages,

    G[c, c', j] = exp(-(v^i[c, j] - v^{i-1}[c', j])^2 / 8)

and the loss is beta * sum_i sum (G_s - G_t)^2 / batch on top of (1 - alpha) CE + alpha KD.

Numerics: the student's SVD is ``torch.linalg.svd`` with a backward whose 1/(s_i^2 - s_j^2) and
1/s factors are regularised (x / (x^2 + eps)), in the spirit of the authors' own clipped SVD
gradient, so near-degenerate or rank-deficient maps give bounded gradients instead of inf/NaN.

Defaults: k = 1 and RBF width 8 (the authors' code and the CRD-era ports); beta = 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import register_method
from methods._feature_common import ctx_stages
from methods.base import Context, Method


def _safe_inverse(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x / (x^2 + eps): 1/x away from 0, bounded by 1/(2 sqrt(eps)) near it."""
    return x / (x * x + eps)


class StableSVD(torch.autograd.Function):
    """Thin SVD A = U diag(S) V^T returning (U, S, V), with a regularised backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, tol: float):  # type: ignore[override]
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        ctx.set_materialize_grads(False)  # unused outputs (U here) come back as None: skip their terms
        ctx.save_for_backward(u, s, vh)
        ctx.tol = tol
        return u, s, vh.mT

    @staticmethod
    def backward(ctx, g_u: torch.Tensor | None, g_s: torch.Tensor | None, g_v: torch.Tensor | None):  # type: ignore[override]
        u, s, vh = ctx.saved_tensors
        v = vh.mT
        m, n, r = u.shape[-2], v.shape[-2], s.shape[-1]
        s2 = s * s
        smax2 = s2.amax(-1, keepdim=True).clamp_min(1e-30)
        # Relative regularisation: gaps below tol * s_max^2 (or values below tol * s_max) are damped.
        eps_gap = (ctx.tol * smax2).pow(2).unsqueeze(-1)
        eps_s = ctx.tol**2 * smax2
        gap = s2.unsqueeze(-2) - s2.unsqueeze(-1)  # gap[j, k] = s_k^2 - s_j^2
        f = _safe_inverse(gap, eps_gap)
        f = f * (1 - torch.eye(r, dtype=f.dtype, device=f.device))
        inner = torch.zeros(*s.shape[:-1], r, r, dtype=s.dtype, device=s.device)
        if g_u is not None:
            j = u.mT @ g_u
            inner = inner + (j - j.mT) * f * s.unsqueeze(-2)
        if g_v is not None:
            k = v.mT @ g_v
            inner = inner + s.unsqueeze(-1) * ((k - k.mT) * f)
        if g_s is not None:
            inner = inner + torch.diag_embed(g_s)
        g_a = u @ inner @ vh
        s_inv = _safe_inverse(s, eps_s).unsqueeze(-2)
        if g_u is not None and m > r:
            gus = g_u * s_inv
            g_a = g_a + (gus - u @ (u.mT @ gus)) @ vh
        if g_v is not None and n > r:
            gvs = g_v * s_inv
            g_a = g_a + u @ (gvs - v @ (v.mT @ gvs)).mT
        return g_a, None


def truncated_svd(f: torch.Tensor, k: int, tol: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (normalised singular values (B, k'), right singular vectors (B, C, k')) of f as HW x C, k' = min(k, HW, C)."""
    x = f.flatten(2).transpose(1, 2)  # (B, HW, C)
    if torch.is_grad_enabled() and x.requires_grad:
        _, s, v = StableSVD.apply(x, tol)
    else:
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh.mT
    k = min(k, s.shape[-1])
    return F.normalize(s[:, :k], dim=1), F.normalize(v[:, :, :k], dim=1)


def align_signs(v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
    """For each teacher vector, the student vector of largest |cosine|, its sign flipped to agree: (B, C, k_t)."""
    cos = v_s.mT @ v_t  # (B, k_s, k_t)
    idx = cos.abs().argmax(1)  # (B, k_t)
    picked = v_s.gather(2, idx.unsqueeze(1).expand(-1, v_s.shape[1], -1))
    sign = torch.where(cos.gather(1, idx.unsqueeze(1)) >= 0, 1.0, -1.0)  # (B, 1, k_t)
    return picked * sign


def rbf_correlation(v_top: torch.Tensor, v_bottom: torch.Tensor, width: float = 8.0) -> torch.Tensor:
    """exp(-(v_top[c, j] - v_bottom[c', j])^2 / width): (B, C_top, C_bottom, k)."""
    return torch.exp(-(v_top.unsqueeze(2) - v_bottom.unsqueeze(1)).pow(2) / width)


@register_method
class KDSVD(Method):
    name = "kdsvd"

    def __init__(self, student: nn.Module, teacher: nn.Module, config: dict, ctx: Context) -> None:
        super().__init__(student, teacher, config, ctx)
        assert ctx.teacher is not None
        self.s_idx, self.t_idx = ctx_stages(ctx)
        if len(self.s_idx) < 2:
            raise ValueError("kdsvd needs at least two matched stages")
        self.adapters = nn.ModuleList(
            nn.Identity() if ctx.student.post[i][0] == ctx.teacher.post[j][0] else nn.Conv2d(ctx.student.post[i][0], ctx.teacher.post[j][0], 1, bias=False)
            for i, j in zip(self.s_idx, self.t_idx)
        )
        # One k for every stage, so consecutive stages' vectors line up index by index.
        ranks = [min(ctx.teacher.post[j][1] * ctx.teacher.post[j][2], ctx.teacher.post[j][0]) for j in self.t_idx]
        self.k = max(1, min(int(self.hp["k"]), *ranks))

    def dfv_loss(self, s_maps: list[torch.Tensor], t_maps: list[torch.Tensor]) -> torch.Tensor:
        width = float(self.hp["width"])
        loss = s_maps[0].new_zeros(())
        prev: tuple[torch.Tensor, torch.Tensor] | None = None
        for f_s, f_t in zip(s_maps, t_maps):
            with torch.no_grad():
                sv_t, v_t = truncated_svd(f_t.detach(), self.k)
            _, v_s = truncated_svd(f_s, self.k + 3)
            v_s = align_signs(v_s, v_t)
            w = sv_t.unsqueeze(1)  # teacher singular values weight both sides
            v_s, v_t = v_s * w, v_t * w
            if prev is not None:
                g_s = rbf_correlation(v_s, prev[0], width)
                g_t = rbf_correlation(v_t, prev[1], width)
                loss = loss + (g_s - g_t).pow(2).sum() / f_s.shape[0]
            prev = (v_s, v_t)
        return loss

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        logits, feats = self.student(x)
        t_logits, t_feats = self.teacher_forward(x)
        s_maps = [a(feats.post[i]) for a, i in zip(self.adapters, self.s_idx)]
        t_maps = [t_feats.post[j] for j in self.t_idx]
        alpha = float(self.hp["alpha"])
        losses = {
            "ce": (1.0 - alpha) * F.cross_entropy(logits, y),
            "svd": float(self.hp["beta"]) * self.dfv_loss(s_maps, t_maps),
        }
        losses.update(self.optional_kd(logits, t_logits))
        return logits, losses
