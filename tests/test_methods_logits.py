"""Methods dkd, dist, lskd, rkd, sp, cc, pkt, crd, pkd, sfd, uda, uda_nokd.

Golden values come from independent NumPy re-statements of each paper's formula (explicit
loops, no call into the implementation's helpers) or from numbers worked out by hand; then
the properties each loss implies, the frozen teacher, and short real runs on digits.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from audit.engine.data import Split, Splits, load_splits
from audit.engine.models import build_model
from audit.engine.train import Recipe, train_student
from methods import get_method
from methods.base import Context, FeatureShapes, kd_divergence
from methods.catalogue import FAMILIES
from methods.cc import cc_loss, correlation_matrix
from methods.crd import ContrastMemory, nce_loss
from methods.dist import dist_terms
from methods.dkd import dkd_terms
from methods.lskd import lskd_divergence
from methods.pkd import Connector, concat_mse, pair_stages
from methods.pkt import pkt_loss
from methods.rkd import rkd_terms
from methods.sfd import max_abs_difference
from methods.sp import sp_loss
from methods.uda import consistency_kl

torch.set_num_threads(1)

METHODS = ["dkd", "dist", "lskd", "rkd", "sp", "cc", "pkt", "crd", "pkd", "sfd", "uda", "uda_nokd"]
PAIRS = [("resnet14", "resnet8"), ("wrn_16_2", "resnet8"), ("resnet32x4", "shufflenet_v2")]


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0))


def np_huber(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d**2, d - 0.5).mean())


def t64(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


RNG = np.random.default_rng(0)
S_LOGITS = RNG.normal(size=(4, 5)) * 2
T_LOGITS = RNG.normal(size=(4, 5)) * 3
TARGET = np.array([0, 3, 1, 4])


# ---------------------------------------------------------------- registry declarations


@pytest.mark.parametrize("name", METHODS)
def test_declaration(name: str) -> None:
    cls = get_method(name)
    assert cls.name == name and cls.paper and cls.year >= 2015 and cls.family in FAMILIES
    assert cls.extra_cost and all("\n" not in n for n in cls.notes)
    assert set(cls.shared) <= {"temperature", "alpha", "strength"}
    # Every searched dimension has a paper default, and the default lies inside its range.
    for key, dist in cls.search_space().items():
        assert dist._contains(dist.to_internal_repr(cls.defaults[key])), (name, key)


# ---------------------------------------------------------------- golden values


def test_dkd_golden_by_hand() -> None:
    # Two classes: NCKD has a single class (0); TCKD is the full binary KL.
    # p_s = (1/2, 1/2), p_t = (3/4, 1/4): KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308120...
    tckd, nckd = dkd_terms(t64([[0.0, 0.0]]), t64([[math.log(3.0), 0.0]]), torch.tensor([0]), 1.0)
    assert float(tckd) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)
    assert float(nckd) == pytest.approx(0.0, abs=1e-12)


def test_dkd_golden_from_formula() -> None:
    temp = 4.0
    tckd_ref = nckd_ref = 0.0
    for zs, zt, y in zip(S_LOGITS, T_LOGITS, TARGET):
        ps, pt = np_softmax(zs / temp), np_softmax(zt / temp)
        tckd_ref += np_kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        rest = [c for c in range(len(zs)) if c != y]
        nckd_ref += np_kl(pt[rest] / (1 - pt[y]), ps[rest] / (1 - ps[y]))
    n = len(TARGET)
    tckd, nckd = dkd_terms(t64(S_LOGITS), t64(T_LOGITS), torch.tensor(TARGET), temp)
    assert float(tckd) == pytest.approx(tckd_ref / n * temp**2, rel=1e-10)
    assert float(nckd) == pytest.approx(nckd_ref / n * temp**2, rel=1e-10)


def test_dkd_reformulates_kd() -> None:
    # The paper's Eq. (7): KD = TCKD + (1 - p_t[gt]) * NCKD, sample by sample.
    for i in range(len(TARGET)):
        s, t, y = t64(S_LOGITS[i : i + 1]), t64(T_LOGITS[i : i + 1]), torch.tensor(TARGET[i : i + 1])
        tckd, nckd = dkd_terms(s, t, y, 2.0)
        pt_gt = torch.softmax(t / 2.0, dim=1)[0, y[0]]
        assert float(tckd + (1 - pt_gt) * nckd) == pytest.approx(float(kd_divergence(s, t, 2.0)), rel=1e-10)


def test_dkd_warmup_scales_to_budget() -> None:
    s, t = build_model("resnet8", in_channels=1, num_classes=10), build_model("resnet14", in_channels=1, num_classes=10)
    x = torch.randn(2, 1, 8, 8)
    ctx = Context(FeatureShapes.of(s, x), FeatureShapes.of(t, x), num_train=100, epochs=24)
    method = get_method("dkd")(s, t, {}, ctx)
    assert method.pretrain(lambda m, n: None, 24) == 0  # the budget comes in ctx.epochs: no extra stage
    # 20/240 of 24 epochs = 2 warm-up epochs of 100 images: the weight after each batch of 50
    # is the fraction of those 200 images seen, then stays at 1.
    factors = []
    for _ in range(5):
        method.forward_train(torch.randn(50, 1, 8, 8), torch.randint(0, 10, (50,)), torch.arange(50))
        factors.append(method.warmup_factor())
    assert factors == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_dist_golden_from_formula() -> None:
    ys, yt = np_softmax(S_LOGITS), np_softmax(T_LOGITS)
    inter_ref = 1 - np.mean([np.corrcoef(ys[i], yt[i])[0, 1] for i in range(ys.shape[0])])
    intra_ref = 1 - np.mean([np.corrcoef(ys[:, j], yt[:, j])[0, 1] for j in range(ys.shape[1])])
    inter, intra = dist_terms(t64(S_LOGITS), t64(T_LOGITS), 1.0)
    assert float(inter) == pytest.approx(inter_ref, rel=1e-7)
    assert float(intra) == pytest.approx(intra_ref, rel=1e-7)


def test_lskd_golden_and_affine_invariance() -> None:
    temp = 2.0
    ref = 0.0
    for zs, zt in zip(S_LOGITS, T_LOGITS):
        # The authors' normalize(): torch.std, i.e. the unbiased (n - 1) std.
        zs_std = (zs - zs.mean()) / zs.std(ddof=1)
        zt_std = (zt - zt.mean()) / zt.std(ddof=1)
        ref += np_kl(np_softmax(zt_std / temp), np_softmax(zs_std / temp))
    got = lskd_divergence(t64(S_LOGITS), t64(T_LOGITS), temp)
    assert float(got) == pytest.approx(ref / len(S_LOGITS) * temp**2, rel=1e-6)
    # Only logit relations matter: a positive affine map of the teacher's logits is a perfect student.
    assert float(lskd_divergence(3.0 * t64(T_LOGITS) - 7.0, t64(T_LOGITS), temp)) == pytest.approx(0.0, abs=1e-10)


def np_rkd(s: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    n = len(s)

    def dist(e: np.ndarray) -> np.ndarray:
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
        return d / (d.sum() / (n * n - n))

    def angle(e: np.ndarray) -> np.ndarray:
        a = np.zeros((n, n, n))
        for j in range(n):
            for i in range(n):
                for k in range(n):
                    u, v = e[i] - e[j], e[k] - e[j]
                    if i != j and k != j:
                        a[j, i, k] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        return a

    return np_huber(dist(s), dist(t)), np_huber(angle(s), angle(t))


def test_rkd_golden_and_invariance() -> None:
    s, t = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 4)) * 2
    d_ref, a_ref = np_rkd(s, t)
    d, a = rkd_terms(t64(s), t64(t))
    assert float(d) == pytest.approx(d_ref, rel=1e-9)
    assert float(a) == pytest.approx(a_ref, rel=1e-9)
    # Relations survive rotation, scaling and translation of the embedding.
    q, _ = np.linalg.qr(RNG.normal(size=(3, 3)))
    d, a = rkd_terms(t64(4.0 * s @ q + 1.5), t64(s))
    assert float(d) == pytest.approx(0.0, abs=1e-12) and float(a) == pytest.approx(0.0, abs=1e-12)


def test_sp_golden_and_scale_invariance() -> None:
    fs, ft = RNG.normal(size=(4, 2, 3, 3)), RNG.normal(size=(4, 5, 2, 2))

    def gram(f: np.ndarray) -> np.ndarray:
        q = f.reshape(len(f), -1)
        g = q @ q.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    ref = ((gram(ft) - gram(fs)) ** 2).sum() / 16
    assert float(sp_loss(t64(fs), t64(ft))) == pytest.approx(ref, rel=1e-10)
    assert float(sp_loss(t64(5.0 * ft), t64(ft))) == pytest.approx(0.0, abs=1e-12)


def test_cc_golden_and_taylor_approximates_rbf() -> None:
    es, et = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 6))
    gamma = 0.4

    def corr(e: np.ndarray) -> np.ndarray:
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        c = e @ e.T
        # P = 2: e^{-2g} (1 + 2g c + (2g c)^2 / 2)
        return math.exp(-2 * gamma) * (1 + 2 * gamma * c + (2 * gamma * c) ** 2 / 2)

    ref = ((corr(et) - corr(es)) ** 2).sum() / 16
    assert float(cc_loss(t64(es), t64(et), gamma, 2)) == pytest.approx(ref, rel=1e-10)
    # A high-order expansion is the Gaussian RBF kernel exp(-gamma ||a - b||^2) of unit vectors.
    u = es / np.linalg.norm(es, axis=1, keepdims=True)
    rbf = np.exp(-gamma * ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1))
    assert np.allclose(correlation_matrix(t64(es), gamma, 12).numpy(), rbf, atol=1e-9)


def test_pkt_golden() -> None:
    es, et = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 7))

    def cond(e: np.ndarray) -> np.ndarray:
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        k = (e @ e.T + 1) / 2
        return k / k.sum(axis=1, keepdims=True)

    ps, pt = cond(es), cond(et)
    ref = np.mean([[pt[i, j] * math.log(pt[i, j] / ps[i, j]) for j in range(4)] for i in range(4)])
    assert float(pkt_loss(t64(es), t64(et))) == pytest.approx(ref, rel=1e-5)  # eps = 1e-7 inside the log
    assert float(pkt_loss(t64(et), t64(et))) == pytest.approx(0.0, abs=1e-12)


def test_crd_nce_golden_by_hand() -> None:
    # One positive and one negative, N = 2: noise K/N = 1/2.
    # -[ln(1 / 1.5) + ln(0.5 / 1.5)] = ln 1.5 + ln 3
    got = nce_loss(t64([[1.0, 1.0]]), n_data=2)
    assert float(got) == pytest.approx(math.log(1.5) + math.log(3.0), rel=1e-6)


def test_crd_nce_golden_from_formula() -> None:
    scores = RNG.uniform(0.1, 3.0, size=(3, 6))
    n, k = 50, 5
    ref = 0.0
    for row in scores:
        ref -= math.log(row[0] / (row[0] + k / n))
        ref -= sum(math.log((k / n) / (h + k / n)) for h in row[1:])
    assert float(nce_loss(t64(scores), n)) == pytest.approx(ref / 3, rel=1e-6)


def test_crd_memory_bank() -> None:
    torch.manual_seed(0)
    mem = ContrastMemory(dim=4, n_data=30, k=12, tau=0.07, momentum=0.5)
    labels = torch.arange(30) % 3
    index = torch.tensor([0, 1, 2, 3, 4, 5])
    mem.labels.copy_(labels)  # every label known: negatives must avoid each anchor's class
    v_s = nn.functional.normalize(torch.randn(6, 4), dim=1)
    v_t = nn.functional.normalize(torch.randn(6, 4), dim=1)
    bank_s, bank_t = mem.memory_s.clone(), mem.memory_t.clone()
    before = bank_s[index]
    idx = mem.sample(index, labels[index])
    assert idx.shape == (6, 13) and torch.equal(idx[:, 0], index)
    assert (labels[idx[:, 1:]] != labels[index][:, None]).float().mean() > 0.99
    state = torch.get_rng_state()
    idx = mem.sample(index, labels[index])
    torch.set_rng_state(state)  # the forward below draws the same negatives
    out_s, out_t = mem(v_s, v_t, index, labels[index])
    z = mem.z.clone()
    assert out_s.shape == out_t.shape == (6, 13) and z.min() > 0
    # h = exp(v . m / tau) / Z, m the other model's bank rows (the paper's Eq. 19), row by row.
    for b in range(6):
        for c in range(13):
            h_s = math.exp(float(bank_t[idx[b, c]] @ v_s[b]) / 0.07) / float(z[0])
            h_t = math.exp(float(bank_s[idx[b, c]] @ v_t[b]) / 0.07) / float(z[1])
            assert float(out_s[b, c]) == pytest.approx(h_s, rel=1e-4)
            assert float(out_t[b, c]) == pytest.approx(h_t, rel=1e-4)
    # Memory rows move halfway to the new embedding and stay on the unit sphere.
    expected = nn.functional.normalize(0.5 * before + 0.5 * v_s, dim=1)
    assert torch.allclose(mem.memory_s[index], expected, atol=1e-6)
    assert torch.allclose(mem.memory_s[index].norm(dim=1), torch.ones(6))
    mem(v_s, v_t, index, labels[index])
    assert torch.equal(mem.z, z)  # Z is fixed on the first batch


def test_crd_loss_prefers_aligned_embeddings() -> None:
    # Scores exp(v.m / tau): a positive aligned with its anchor beats a misaligned one.
    aligned = torch.exp(torch.tensor([[1.0, 0.0, 0.0, -0.2]]) / 0.07)
    misaligned = torch.exp(torch.tensor([[0.0, 1.0, 0.0, -0.2]]) / 0.07)
    z = aligned.mean() * 10
    assert float(nce_loss(aligned / z, 10)) < float(nce_loss(misaligned / z, 10))


def test_pkd_golden_and_pairing() -> None:
    s = [RNG.normal(size=(2, 3, 2, 2)), RNG.normal(size=(2, 4, 1, 1))]
    t = [RNG.normal(size=(2, 3, 2, 2)), RNG.normal(size=(2, 4, 1, 1))]
    sq = sum(((a - b) ** 2).sum() for a, b in zip(s, t))
    ref = sq / (2 * (12 + 4))  # mean over the concatenated, flattened features
    assert float(concat_mse([t64(a) for a in s], [t64(b) for b in t])) == pytest.approx(ref, rel=1e-10)
    assert pair_stages(3, 3) == [(1, 1), (2, 2), (3, 3)]
    assert pair_stages(3, 4) == [(1, 2), (2, 3), (3, 4)]
    assert pair_stages(4, 3) == [(2, 1), (3, 2), (4, 3)]
    conn = Connector((16, 8, 8), (64, 4, 4))
    assert conn(torch.randn(2, 16, 8, 8)).shape == (2, 64, 4, 4)
    assert Connector((16, 2, 2), (8, 4, 4))(torch.randn(2, 16, 2, 2)).shape == (2, 8, 4, 4)


def test_sfd_golden() -> None:
    fs, ft = RNG.normal(size=(3, 4, 2, 2)), RNG.normal(size=(3, 4, 3, 3))
    ms = fs.reshape(3, 4, -1).max(axis=2)
    mt = ft.reshape(3, 4, -1).max(axis=2)
    ref = max(abs(ms[b, c] - mt[b, c]) for b in range(3) for c in range(4))
    assert float(max_abs_difference(t64(fs), t64(ft))) == pytest.approx(ref, rel=1e-12)


def test_uda_consistency_golden() -> None:
    ref = np.mean([np_kl(np_softmax(c), np_softmax(s)) for c, s in zip(T_LOGITS, S_LOGITS)])
    clean, strong = t64(T_LOGITS).requires_grad_(), t64(S_LOGITS).requires_grad_()
    got = consistency_kl(clean, strong)
    assert float(got.detach()) == pytest.approx(ref, rel=1e-10)
    got.backward()
    assert clean.grad is None or float(clean.grad.abs().sum()) == 0.0  # clean view is a fixed target
    assert float(strong.grad.abs().sum()) > 0


# ---------------------------------------------------------------- method-level properties


@functools.cache
def _teacher(arch: str) -> nn.Module:
    # Built once per architecture and shared: every test checks that it comes back unchanged.
    torch.manual_seed(2)
    return build_model(arch, in_channels=1, num_classes=10).eval()


def _build(name: str, teacher_arch: str, student_arch: str, *, same_weights: bool = False, strong=None, num_train: int = 64):
    torch.manual_seed(0)
    student = build_model(student_arch, in_channels=1, num_classes=10)
    teacher = copy.deepcopy(student).eval() if same_weights else _teacher(teacher_arch)
    cls = get_method(name)
    x = torch.randn(2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    ctx = Context(
        FeatureShapes.of(student, x), FeatureShapes.of(teacher, x) if cls.needs_teacher else None, num_train,
        generator=g,
    )
    method = cls(student, teacher if cls.needs_teacher else None, {}, ctx)
    if strong is not None:
        method.second_view = strong  # a chosen second view instead of the seeded strong augmentation
    return method, student, teacher


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)), torch.arange(16)


# Loss terms that must vanish when the student is the teacher (same weights, both in eval mode).
VANISH = {
    "dkd": ["dkd"], "dist": ["inter", "intra"], "lskd": ["kd"], "rkd": ["rkd_distance", "rkd_angle"],
    "sp": ["sp"], "cc": ["cc"], "pkt": ["pkt"], "pkd": ["kd", "patience"], "sfd": ["fd"],
}


@pytest.mark.parametrize("name", sorted(VANISH))
def test_zero_when_student_is_teacher(name: str, batch) -> None:
    method, student, teacher = _build(name, "resnet8", "resnet8", same_weights=True)
    if name == "cc":
        method.embed_t.load_state_dict(method.embed_s.state_dict())  # same embedding heads too
    method.eval()
    x, y, idx = batch
    _, losses = method.forward_train(x, y, idx)
    # DIST's Pearson keeps the reference code's eps = 1e-8 in the denominator: near-uniform
    # predictions of an untrained net have tiny centred norms, so 1 - rho is ~1e-6, not 0.
    tol = 1e-4 if name == "dist" else 1e-6
    for key in VANISH[name]:
        assert float(losses[key].detach()) == pytest.approx(0.0, abs=tol), key


@pytest.mark.parametrize("name", ["uda", "uda_nokd"])
def test_uda_views(name: str, batch) -> None:
    # With an identity "strong" view and the teacher equal to the student, only CE is left.
    method, student, _ = _build(name, "resnet8", "resnet8", same_weights=True, strong=lambda v: v.clone())
    method.hp["consistency"] = 1.0
    method.eval()
    x, y, idx = batch
    with torch.no_grad():
        _, losses = method.forward_train(x, y, idx)
        ce = float(nn.functional.cross_entropy(student(x)[0], y))
    alpha = float(method.hp.get("alpha", 0.0))
    assert float(losses["consistency"]) == pytest.approx(0.0, abs=1e-7)
    assert float(sum(losses.values())) == pytest.approx((1 - alpha) * ce if name == "uda" else ce, rel=1e-5)
    # A real second view: the total is half of each view's loss plus the weighted consistency.
    method, student, _ = _build(name, "resnet8", "resnet8", same_weights=True, strong=lambda v: v.flip(-1))
    method.hp["consistency"] = 2.0
    method.eval()
    with torch.no_grad():
        _, losses = method.forward_train(x, y, idx)
        l_clean, l_flip = student(x)[0], student(x.flip(-1))[0]
    ref_cons = np.mean([np_kl(np_softmax(c), np_softmax(s)) for c, s in zip(l_clean.double().numpy(), l_flip.double().numpy())])
    assert float(losses["consistency"]) == pytest.approx(2.0 * ref_cons, rel=1e-4)
    half_views = float(sum(v for k, v in losses.items() if k != "consistency"))
    ce_views = 0.5 * (float(nn.functional.cross_entropy(l_clean, y)) + float(nn.functional.cross_entropy(l_flip, y)))
    assert half_views == pytest.approx((1 - alpha) * ce_views if name == "uda" else ce_views, rel=1e-5)


@pytest.mark.parametrize("teacher_arch,student_arch", PAIRS)
@pytest.mark.parametrize("name", METHODS)
def test_gradients_reach_student_not_teacher(name: str, teacher_arch: str, student_arch: str, batch) -> None:
    method, student, teacher = _build(name, teacher_arch, student_arch)
    method.hp.update({"consistency": 1.0, "alpha": 0.5} if name.startswith("uda") else {})
    t_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    method.train()
    x, y, idx = batch
    opt = torch.optim.SGD(method.trainable_parameters(), lr=0.1)
    logits, losses = method.forward_train(x, y, idx)
    assert logits.shape == (16, 10) and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    opt.step()
    grads = [p.grad for p in student.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Trainable extras (heads, connectors) get finite gradients and are optimised.
    extras = [p for n, p in method.named_parameters() if not n.startswith("student.")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in extras)
    assert {id(p) for p in method.trainable_parameters()} >= {id(p) for p in extras}
    # The teacher: no gradient, not optimised, still in eval mode, batch-norm statistics unmoved.
    if get_method(name).needs_teacher:
        assert all(p.grad is None for p in teacher.parameters())
        assert not {id(p) for p in teacher.parameters()} & {id(p) for p in method.trainable_parameters()}
        assert not teacher.training
        for k, v in teacher.state_dict().items():
            assert torch.equal(v, t_state[k]), k


# ---------------------------------------------------------------- real training runs on digits


@pytest.fixture(scope="module")
def digits() -> Splits:
    # The real digits splits, the training part cut to three batches to keep the file fast;
    # trial-style (no test split), as a search trial sees them.
    splits = load_splits("digits", split_seed=0).without_test()
    return replace(splits, train=Split(splits.train.x[:384], splits.train.y[:384]))


@pytest.fixture(scope="module")
def teachers() -> dict[str, nn.Module]:
    # Untrained teachers are enough to exercise the whole path (shapes, losses, optimiser, eval).
    out = {}
    for arch in ("resnet14", "wrn_16_2"):
        torch.manual_seed(0)
        out[arch] = build_model(arch, in_channels=1, num_classes=10).eval()
    return out


@pytest.mark.parametrize("teacher_arch", ["resnet14", "wrn_16_2"])
@pytest.mark.parametrize("name", METHODS)
def test_real_run_on_digits(name: str, teacher_arch: str, digits, teachers) -> None:
    teacher = teachers[teacher_arch]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cls = get_method(name)
    result, student = train_student(
        method=name, config=cls.default_config(), splits=digits, student_arch="resnet8",
        teacher=teacher, recipe=Recipe(epochs=1, batch_size=128), seed=0,
    )
    assert result.status == "ok", result.reason
    assert len(result.val_acc) == 1 and math.isfinite(result.val_acc[0]) and result.pretrain_epochs == 0
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_sp_all_stages_sums_paired_stages(batch) -> None:
    method, student, teacher = _build("sp", "wrn_16_2", "resnet8")
    method.hp["stages"] = "all"
    method.eval()
    x, y, idx = batch
    with torch.no_grad():
        _, losses = method.forward_train(x, y, idx)
        fs, ft = student(x)[1].post, teacher(x)[1].post
    ref = sum(float(sp_loss(s, t)) for s, t in zip(fs[1:], ft[1:]))  # both have three stages
    assert float(losses["sp"]) == pytest.approx(3000.0 * ref, rel=1e-5)
