"""Feature-distillation methods: at, fsp, nst, ft, vid, ab, oh, kdsvd, reviewkd.

Golden values are worked out by hand or from the papers' formulas with plain torch arithmetic
written here (never the modules' helpers); then the properties each method implies; then one short
real training run per method on digits for a same-architecture and a cross-architecture pair.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn

from audit.engine.data import Split, Splits, load_splits
from audit.engine.models import build_model
from audit.engine.train import Recipe, train_student
from methods import canonical_name, get_method
from methods.base import Context, FeatureShapes
from methods.catalogue import FAMILIES, SHARED_SPACE

torch.set_num_threads(1)

METHODS = ["at", "fsp", "nst", "ft", "vid", "ab", "oh", "kdsvd", "reviewkd"]
MULTI_STAGE = {"fsp", "ft", "ab"}
# (teacher, student): same architecture family, cross-architecture with other widths, and the
# CRD benchmark's resnet32x4 -> ShuffleNetV2 (other widths, other spatial sizes, no stage BNs).
PAIRS = [("resnet14", "resnet8"), ("wrn_16_2", "resnet8"), ("resnet32x4", "shufflenet_v2")]


_TEMPLATES: dict[tuple[str, int], nn.Module] = {}


def _calibrated(arch: str, seed: int) -> nn.Module:
    """A fresh copy of an untrained model whose BN running statistics are not the defaults, in eval mode."""
    if (arch, seed) not in _TEMPLATES:  # built once per module run: building is the slow part
        torch.manual_seed(seed)
        model = build_model(arch, in_channels=1, num_classes=10)
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(16, 1, 8, 8))
        _TEMPLATES[arch, seed] = model.eval()
    return copy.deepcopy(_TEMPLATES[arch, seed])


def _build(method: str, teacher: nn.Module, student: nn.Module, hp: dict | None = None, num_train: int = 64,
           epochs: int = 12):
    cls = get_method(method)
    sample = torch.randn(2, 1, 8, 8)
    ctx = Context(FeatureShapes.of(student, sample), FeatureShapes.of(teacher, sample), num_train, epochs=epochs)
    return cls(student, teacher, {**cls.default_config(), **(hp or {})}, ctx)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


@pytest.fixture(scope="module")
def small_digits() -> Splits:
    # Real digits, trimmed so that 18 short runs (two steps an epoch) fit the file's time budget on a shared 2-core box.
    s = load_splits("digits", split_seed=0)
    return Splits(s.info, Split(s.train.x[:256], s.train.y[:256]), Split(s.val.x[:96], s.val.y[:96]), None, s.checksum, s.split_seed)


# --------------------------------------------------------------------------------------------
# Declarations


@pytest.mark.parametrize("name", METHODS)
def test_declaration(name: str) -> None:
    cls = get_method(name)
    assert cls.name == name
    assert cls.family in FAMILIES
    assert cls.family == ("multi-stage" if name in MULTI_STAGE else "features")
    assert cls.paper and 2015 <= cls.year <= 2024 and cls.needs_teacher
    assert set(cls.shared) <= set(SHARED_SPACE) and "strength" in cls.shared
    assert set(cls.search_space()) <= set(cls.defaults)
    assert isinstance(cls.extra_cost, str) and cls.extra_cost != ""
    assert cls.notes and all(isinstance(n, str) and "\n" not in n for n in cls.notes)
    own = set(cls.space)
    assert own, "each method searches its own weights"
    for key in own:
        dist = cls.space[key]
        assert dist.low <= cls.defaults[key] <= dist.high  # ranges around the paper's defaults
        if key in ("beta", "scale"):
            assert dist.log


def test_paper_defaults_and_aliases() -> None:
    assert canonical_name("ofd") == "oh"
    assert get_method("at").defaults["beta"] == 1000.0 and get_method("at").defaults["p"] == 2.0
    assert get_method("nst").defaults["beta"] == 50.0
    assert get_method("ft").defaults["beta"] == 500.0 and get_method("ft").defaults["rate"] == 0.5  # the authors' --beta 500
    assert get_method("vid").defaults["beta"] == 1.0
    assert get_method("ab").defaults["margin"] == 1.0
    assert get_method("reviewkd").defaults["beta"] == 1.0
    # Methods without a KD term do not search temperature or alpha.
    for name in ("oh", "reviewkd", "fsp"):
        assert get_method(name).shared == ("strength",)


# --------------------------------------------------------------------------------------------
# Golden values


def _at_plain(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    b = f_s.shape[0]
    a_s = (f_s**2).sum(1) / f_s.shape[1]
    a_t = (f_t**2).sum(1) / f_t.shape[1]
    q_s = a_s.reshape(b, -1) / torch.sqrt((a_s.reshape(b, -1) ** 2).sum(1, keepdim=True))
    q_t = a_t.reshape(b, -1) / torch.sqrt((a_t.reshape(b, -1) ** 2).sum(1, keepdim=True))
    return ((q_s - q_t) ** 2).sum() / q_s.numel()


def test_at_golden() -> None:
    from methods.at import at_loss

    # By hand: attention [1,0,0,0] vs [0,1,0,0] -> mean squared difference (1 + 1) / 4.
    f_s = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    f_t = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    assert at_loss(f_s, f_t).item() == pytest.approx(0.5)
    g = torch.Generator().manual_seed(1)
    f_s, f_t = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 6, 4, 4, generator=g)
    assert at_loss(f_s, f_t).item() == pytest.approx(_at_plain(f_s, f_t).item(), rel=1e-5)
    # Different sizes: the larger FEATURE map is average-pooled before its attention map is taken,
    # as in the CRD benchmark's AT (distiller_zoo/AT.py) and mdistiller's.
    assert at_loss(torch.ones(2, 3, 4, 4), torch.ones(2, 5, 2, 2)).item() == pytest.approx(0.0, abs=1e-7)
    big = torch.randn(1, 2, 4, 4, generator=g)
    pooled = big.reshape(1, 2, 2, 2, 2, 2).mean((3, 5))  # 2x2 blocks of the features, by hand
    assert at_loss(big, pooled).item() == pytest.approx(0.0, abs=1e-6)
    # Pooling the attention map instead would not match: the order matters for unequal sizes.
    a_pooled = (big**2).mean(1, keepdim=True).reshape(1, 1, 2, 2, 2, 2).mean((3, 5))
    assert at_loss(big, torch.sqrt(a_pooled).expand(1, 3, 2, 2)).item() > 1e-4


def test_at_method_sums_stages(batch) -> None:
    x, y = batch
    teacher, student = _calibrated("wrn_16_2", 1), _calibrated("resnet8", 2).train()
    m = _build("at", teacher, student)
    _, losses = m.forward_train(x, y, torch.arange(8))
    _, fs = student(x)
    _, ft = teacher(x)
    expected = 1000.0 * sum(_at_plain(fs.post[i], ft.post[i]) for i in (1, 2, 3))
    assert losses["at"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert losses["ce"].item() == pytest.approx(F.cross_entropy(student(x)[0], y).item(), rel=1e-4)
    assert "kd" not in losses  # alpha = 0: AT alone, as the paper's default


def _mmd2_plain(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Squared MMD with (x.y)^2, channel maps as samples, averaged over the batch; loops on purpose."""
    total = 0.0
    for b in range(f_s.shape[0]):
        # An all-zero (dead) channel map stays zero, as F.normalize's epsilon leaves it.
        s = [c.detach().flatten() / max(float(c.detach().norm()), 1e-12) for c in f_s[b]]
        t = [c.detach().flatten() / max(float(c.detach().norm()), 1e-12) for c in f_t[b]]
        k = lambda u, v: float(torch.dot(u, v)) ** 2  # noqa: E731
        tt = sum(k(a, c) for a in t for c in t) / len(t) ** 2
        ss = sum(k(a, c) for a in s for c in s) / len(s) ** 2
        st = sum(k(a, c) for a in s for c in t) / (len(s) * len(t))
        total += tt + ss - 2 * st
    return torch.tensor(total / f_s.shape[0])


def test_nst_golden() -> None:
    from methods.nst import nst_mmd2

    # By hand: orthogonal single maps -> k(s,s) = k(t,t) = 1, k(s,t) = 0, MMD^2 = 2.
    assert nst_mmd2(torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[0.0, 3.0]]]])).item() == pytest.approx(2.0)
    g = torch.Generator().manual_seed(2)
    f_s, f_t = torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 5, 2, 2, generator=g)
    assert nst_mmd2(f_s, f_t).item() == pytest.approx(_mmd2_plain(f_s, f_t).item(), rel=1e-4)
    assert nst_mmd2(f_t, f_t).item() == pytest.approx(0.0, abs=1e-6)


def test_nst_method_is_half_lambda_times_mmd(batch) -> None:
    x, y = batch
    teacher, student = _calibrated("resnet14", 1), _calibrated("resnet8", 2).train()
    m = _build("nst", teacher, student)
    _, losses = m.forward_train(x, y, torch.arange(8))
    _, fs = student(x)
    _, ft = teacher(x)
    expected = 50.0 / 2 * sum(_mmd2_plain(fs.post[i], ft.post[i]) for i in (1, 2, 3))
    assert losses["nst"].item() == pytest.approx(expected.item(), rel=1e-3)


def test_vid_golden() -> None:
    from methods.vid import VIDRegressor, gaussian_nll

    # By hand: mu = 0, t = 2, sigma^2 = 4 -> 0.5 (4/4 + log 4).
    v = gaussian_nll(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0), torch.tensor([4.0]))
    assert v.item() == pytest.approx(0.5 * (1 + math.log(4)))
    # Per-channel variance, averaged over batch, channels and positions.
    mean, target, var = torch.zeros(2, 2, 1, 2), torch.ones(2, 2, 1, 2), torch.tensor([1.0, 2.0])
    expected = (0.5 * (1 / 1 + math.log(1)) + 0.5 * (1 / 2 + math.log(2))) / 2
    assert gaussian_nll(mean, target, var).item() == pytest.approx(expected)
    reg = VIDRegressor(4, 6, 6, init_var=5.0)
    assert torch.allclose(reg.variance(), torch.full((6,), 5.0), atol=1e-4)  # softplus(a) + eps starts at 5
    # Minimal in the mean at mu = t (what "student equals teacher" means for a Gaussian bound).
    t = torch.randn(3, 2, 2, 2)
    at_t = gaussian_nll(t, t, torch.tensor([0.7, 1.3]))
    assert at_t.item() == pytest.approx(0.5 * (math.log(0.7) + math.log(1.3)) / 2, rel=1e-5)
    assert gaussian_nll(t + 0.1, t, torch.tensor([0.7, 1.3])) > at_t


def test_oh_margin_and_partial_l2_golden() -> None:
    from methods.oh import bn_margin, partial_l2

    gamma = torch.tensor([1.0, 2.0, 1.0, -0.5])
    beta = torch.tensor([0.0, 1.0, 10.0, 0.2])
    got = bn_margin(gamma, beta)
    for c in range(4):
        s, m = abs(gamma[c].item()), beta[c].item()
        tail = norm.cdf(-m / s)
        want = m - s * norm.pdf(m / s) / tail if tail > 0.001 else -3 * s  # E[x | x < 0], OFD's rule
        assert got[c].item() == pytest.approx(want, rel=1e-5)
    assert got[0].item() == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)  # half-normal mean
    assert got[2].item() == pytest.approx(-3.0)
    # By hand, margin -1: clipped target [1, -1, -0.5, -1]; kept where s > t or t > 0: positions 0 and 2.
    source = torch.tensor([2.0, -1.0, 0.5, -3.0]).view(1, 4, 1, 1)
    target = torch.tensor([1.0, -2.0, -0.5, -1.0]).view(1, 4, 1, 1)
    assert partial_l2(source, target, torch.full((4,), -1.0)).item() == pytest.approx(2.0)


def test_oh_zero_when_student_matches_teacher(batch) -> None:
    x, y = batch
    teacher = _calibrated("resnet8", 1)
    student = copy.deepcopy(teacher).train()
    m = _build("oh", teacher, student)
    m.train()
    for conn in m.connectors:  # identity connectors
        conv, bn = conn
        nn.init.eye_(conv.weight.data.view(conv.weight.shape[0], -1))
        bn.eps = 0.0
        bn.eval()
    student.eval()  # same batch-norm behaviour as the teacher
    _, losses = m.forward_train(x, y, torch.arange(8))
    assert losses["ofd"].item() == pytest.approx(0.0, abs=1e-7)
    assert all(mg.max() < 0 for mg in m.margins())


def test_oh_stage_weights_and_scaling(batch) -> None:
    x, y = batch
    teacher, student = _calibrated("wrn_16_2", 1), _calibrated("resnet8", 2).train()
    m = _build("oh", teacher, student, {"beta": 2.0})
    _, losses = m.forward_train(x, y, torch.arange(8))
    _, fs = student(x)
    _, ft = teacher(x)
    total = 0.0
    for n, (conn, bn) in enumerate(zip(m.connectors, teacher.bn_before_relu())):
        s = conn(fs.pre[n + 1])
        gamma, beta = bn.weight.detach(), bn.bias.detach()
        margin = torch.tensor([
            b - abs(g) * norm.pdf(b / abs(g)) / norm.cdf(-b / abs(g)) if norm.cdf(-b / abs(g)) > 0.001 else -3 * abs(g)
            for g, b in zip(gamma.tolist(), beta.tolist())
        ]).view(1, -1, 1, 1)
        t = torch.maximum(ft.pre[n + 1], margin)
        keep = ((s > t) | (t > 0)).float()
        total = total + ((s - t) ** 2 * keep).sum() * [0.25, 0.5, 1.0][n]
    assert losses["ofd"].item() == pytest.approx(2.0 * total.item() / (8 * 1000), rel=1e-4)


def test_oh_zero_margin_where_teacher_has_no_stage_bn() -> None:
    teacher, student = _calibrated("shufflenet_v2", 1), _calibrated("resnet8", 2)
    m = _build("oh", teacher, student)
    assert m.zero_margin_stages == [1, 2, 3]
    assert all(torch.equal(mg, torch.zeros_like(mg)) for mg in m.margins())


def test_ab_golden() -> None:
    from methods.ab import ab_margin_loss, stage_weights

    # By hand (margin 1): (1-0.5)^2 + (1+2)^2 [teacher on]  +  (1+1.5)^2 + (1-0.5)^2 [teacher off] = 15.75.
    source = torch.tensor([0.5, -2.0, 1.5, -0.5])
    target = torch.tensor([1.0, 1.0, -1.0, -1.0])
    assert ab_margin_loss(source, target, 1.0).item() == pytest.approx(15.75)
    # Zero once the student is beyond the margin on the teacher's side.
    assert ab_margin_loss(torch.tensor([1.5, -1.0, 3.0]), torch.tensor([0.2, -0.1, 5.0]), 1.0).item() == 0.0
    assert stage_weights(3) == [0.25, 0.5, 1.0]


def test_ab_boundary_loss_matches_formula(batch) -> None:
    x, _ = batch
    teacher, student = _calibrated("wrn_16_2", 1), _calibrated("resnet8", 2).train()
    m = _build("ab", teacher, student)
    got = m.boundary_loss(x)
    _, fs = student(x)
    _, ft = teacher(x)
    total = 0.0
    for n, w in enumerate([0.25, 0.5, 1.0]):
        r, t = m.connectors[n](fs.pre[n + 1]), ft.pre[n + 1]
        on = t > 0
        total = total + w * (torch.where(on, (1 - r).clamp(min=0) ** 2, (1 + r).clamp(min=0) ** 2)).sum()
    assert got.item() == pytest.approx(3.0 * total.item() / (8 * 1000), rel=1e-4)


def test_fsp_golden() -> None:
    from methods.fsp import fsp_matrix

    # By hand: channels [1,2], [3,4] against [5,6] over two positions -> [(5+12)/2, (15+24)/2].
    f1 = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    f2 = torch.tensor([[[[5.0, 6.0]]]])
    assert torch.allclose(fsp_matrix(f1, f2), torch.tensor([[[8.5], [19.5]]]))
    # A 2x2 map against a 1x1 map: the larger is average-pooled first.
    f1 = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    assert fsp_matrix(f1, torch.tensor([[[[2.0]]]])).item() == pytest.approx(4.0 * 2.0)


def test_fsp_loss_matches_formula_and_vanishes_on_a_copy(batch) -> None:
    x, _ = batch
    teacher = _calibrated("resnet14", 1)
    student = _calibrated("resnet8", 2).train()
    m = _build("fsp", teacher, student)
    _, fs = student(x)
    _, ft = teacher(x)

    def g(a, b):
        if a.shape[-1] > b.shape[-1]:
            a = F.avg_pool2d(a, a.shape[-1] // b.shape[-1])
        return torch.einsum("bchw,bdhw->bcd", a, b) / (a.shape[-1] * a.shape[-2])

    expected = sum(((g(fs.post[i], fs.post[i + 1]) - g(ft.post[i], ft.post[i + 1])) ** 2).mean() for i in range(3))
    assert m.fsp_loss(x).item() == pytest.approx(expected.item(), rel=1e-4)
    copy_m = _build("fsp", teacher, copy.deepcopy(teacher).eval())
    assert copy_m.fsp_loss(x).item() == pytest.approx(0.0, abs=1e-8)


def test_ft_golden() -> None:
    from methods.ft import ft_loss

    # By hand: [3,4]/5 = [0.6,0.8] vs [0,1] -> mean |[0.6, -0.2]| = 0.4.
    f_s = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    f_t = torch.tensor([0.0, 5.0]).view(1, 2, 1, 1)
    assert ft_loss(f_s, f_t).item() == pytest.approx(0.4)
    f = torch.randn(3, 4, 2, 2)
    assert ft_loss(2.5 * f, f).item() == pytest.approx(0.0, abs=1e-7)  # normalised factors: scale-free


def _kdsvd_plain(s_maps: list[torch.Tensor], t_maps: list[torch.Tensor], k: int = 1) -> float:
    """The CRD-era KDSVD loss written out sample by sample."""
    total = 0.0
    b = s_maps[0].shape[0]
    for n in range(b):
        prev = None
        for f_s, f_t in zip(s_maps, t_maps):
            xs = f_s[n].reshape(f_s.shape[1], -1).T  # HW x C
            xt = f_t[n].reshape(f_t.shape[1], -1).T
            _, ss, vhs = torch.linalg.svd(xs, full_matrices=False)
            _, st, vht = torch.linalg.svd(xt, full_matrices=False)
            vs = vhs.T[:, : k + 3]
            vt = vht.T[:, :k]
            w = st[:k] / st[:k].norm()
            cols = []
            for j in range(k):
                cos = vs.T @ vt[:, j]
                i = int(cos.abs().argmax())
                cols.append(vs[:, i] * (1.0 if cos[i] >= 0 else -1.0))
            vs = torch.stack(cols, 1) * w
            vt = vt * w
            if prev is not None:
                ps, pt = prev
                for j in range(k):
                    gs = torch.exp(-((vs[:, j][:, None] - ps[:, j][None, :]) ** 2) / 8)
                    gt = torch.exp(-((vt[:, j][:, None] - pt[:, j][None, :]) ** 2) / 8)
                    total += float(((gs - gt) ** 2).sum())
            prev = (vs, vt)
    return total / b


def test_kdsvd_golden() -> None:
    from methods.kdsvd import align_signs, rbf_correlation, truncated_svd

    # By hand: exp(-(0.5 - (-0.5))^2 / 8) = exp(-1/8).
    assert rbf_correlation(torch.tensor([[[0.5]]]), torch.tensor([[[-0.5]]])).item() == pytest.approx(math.exp(-1 / 8))
    # Alignment picks the student vector of largest |cosine| and flips its sign.
    v_s = torch.tensor([[[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]])
    v_t = torch.tensor([[[0.0], [0.8], [0.6]]])
    assert torch.allclose(align_signs(v_s, v_t), torch.tensor([[[0.0], [1.0], [0.0]]]))
    # A rank-one map u v^T has v/|v| as its first right singular vector (up to sign), value 1 after normalising.
    u, v = torch.tensor([1.0, 2.0, 2.0, 0.0]), torch.tensor([3.0, 0.0, 4.0])
    f = torch.outer(u, v).T.reshape(1, 3, 2, 2)  # C x H x W whose HW x C matrix is u v^T
    s, vec = truncated_svd(f, 1)
    assert s.item() == pytest.approx(1.0)
    assert torch.allclose(vec[0, :, 0].abs(), v / v.norm(), atol=1e-6)
    g = torch.Generator().manual_seed(3)
    s_maps = [torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 6, 2, 2, generator=g), torch.randn(2, 5, 2, 2, generator=g)]
    t_maps = [torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 6, 2, 2, generator=g), torch.randn(2, 5, 2, 2, generator=g)]
    teacher, student = _calibrated("resnet14", 1), _calibrated("resnet8", 2)
    m = _build("kdsvd", teacher, student)
    assert m.dfv_loss(s_maps, t_maps).item() == pytest.approx(_kdsvd_plain(s_maps, t_maps), rel=1e-4)
    assert m.dfv_loss(t_maps, t_maps).item() == pytest.approx(0.0, abs=1e-10)


def test_kdsvd_backward_matches_autograd_and_stays_finite() -> None:
    from methods.kdsvd import StableSVD

    g = torch.Generator().manual_seed(4)
    w = torch.randn(3, 6, 2, generator=g, dtype=torch.float64)
    for shape in [(3, 6, 4), (3, 4, 6)]:  # tall and wide
        a = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        r = min(shape[1:])

        def loss(u, s, v):  # sign-invariant in each singular pair, so the gradient is well defined
            return (v[:, :, :2] ** 2 * w[:, : v.shape[1], :2]).sum() + (s * torch.arange(1.0, r + 1, dtype=s.dtype)).sum()

        ref = torch.autograd.grad(loss(*(lambda o: (o[0], o[1], o[2].mT))(torch.linalg.svd(a, full_matrices=False))), a)[0]
        got = torch.autograd.grad(loss(*StableSVD.apply(a, 1e-9)), a)[0]
        assert torch.allclose(got, ref, atol=1e-7, rtol=1e-6)
    # Rank-deficient and repeated singular values: plain SVD gradients blow up, the regularised ones stay finite.
    degenerate = torch.zeros(2, 4, 3)
    degenerate[:, 0, 0] = degenerate[:, 1, 1] = 1.0  # singular values 1, 1, 0
    degenerate.requires_grad_(True)
    _, s, v = StableSVD.apply(degenerate, 1e-3)
    (v[:, :, :2] ** 2).sum().backward()
    assert torch.isfinite(degenerate.grad).all()


def test_reviewkd_golden() -> None:
    from methods.reviewkd import hcl_loss

    # By hand, 2x2 map vs zeros: mse 7.5; only the 1x1 level applies (mean 2.5 -> 6.25, weight 1/2).
    f_s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert hcl_loss(f_s, torch.zeros_like(f_s)).item() == pytest.approx((7.5 + 0.5 * 6.25) / 1.5)
    # An 8x8 map uses the 4x4, 2x2 and 1x1 levels, weights 1/2, 1/4, 1/8.
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    levels = [((a - b) ** 2).mean()] + [
        ((F.avg_pool2d(a, 8 // l) - F.avg_pool2d(b, 8 // l)) ** 2).mean() for l in (4, 2, 1)
    ]
    expected = (levels[0] + levels[1] / 2 + levels[2] / 4 + levels[3] / 8) / (1 + 1 / 2 + 1 / 4 + 1 / 8)
    assert hcl_loss(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    assert hcl_loss(a, a).item() == 0.0


def test_reviewkd_warmup_and_shapes(batch) -> None:
    x, y = batch
    teacher, student = _calibrated("resnet32x4", 1), _calibrated("shufflenet_v2", 2).train()
    paper = _build("reviewkd", teacher, student, num_train=16, epochs=240)
    assert paper.warmup_factor(1) == pytest.approx(1 / 20)  # the paper's 240 epochs: the authors' 20 of warm-up
    m = _build("reviewkd", teacher, student, num_train=16, epochs=24)
    assert m.pretrain(lambda module, n: None, 24) == 0  # no extra stage: the budget comes in ctx.epochs
    # 20/240 of 24 epochs = 2 epochs of warm-up, from 0.
    assert m.warmup_factor(0) == 0.0 and m.warmup_factor(1) == pytest.approx(0.5) and m.warmup_factor(3) == 1.0
    _, fs = student(x)
    _, ft = teacher(x)
    outs = m.fused(fs)
    targets = [ft.pre[1], ft.pre[2], ft.pre[3], ft.pooled[:, :, None, None]]
    assert [o.shape for o in outs] == [t.shape for t in targets]
    m.train()
    student.eval()  # batch-norm statistics fixed, so every call sees the same features
    losses = [m.forward_train(x, y, torch.arange(8))[1]["reviewkd"].item() for _ in range(6)]
    # 8 samples a call, 16 an epoch: 0, 1/2, 1, 3/2, 2, 5/2 epochs done -> factors 0, 1/4, 1/2, 3/4, 1, 1.
    assert losses[0] == 0.0 and losses[1] > 0
    for n, factor in enumerate([0.25, 0.5, 0.75, 1.0, 1.0], start=1):
        assert losses[n] == pytest.approx(4 * factor * losses[1], rel=1e-4)


# --------------------------------------------------------------------------------------------
# Properties every method must have, on same- and cross-architecture pairs


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{t}-{s}" for t, s in PAIRS])
@pytest.mark.parametrize("name", METHODS)
def test_training_step_properties(name: str, pair: tuple[str, str], batch) -> None:
    x, y = batch
    teacher, student = _calibrated(pair[0], 1), _calibrated(pair[1], 2)
    m = _build(name, teacher, student)
    if name == "reviewkd":
        m._seen = 10 * m.num_train  # past the warm-up, so the review loss counts
    stats = {k: v.clone() for k, v in teacher.state_dict().items()}
    m.train()
    assert not teacher.training
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.01)
    logits, losses = m.forward_train(x, y, torch.arange(8))
    assert logits.shape == (8, 10)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    # The distillation term alone (the pre-training stage's for fsp and ab) reaches the student's
    # body -- its stem -- with finite gradients.
    distill = {"fsp": lambda: m.fsp_loss(x), "ab": lambda: m.boundary_loss(x)}.get(
        name, lambda: sum(v for k, v in losses.items() if k not in ("ce", "kd"))
    )()
    opt.zero_grad()
    distill.backward(retain_graph=True)
    stem = next(student.parameters())
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert all(torch.isfinite(gr).all() for gr in grads)
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.trainable_parameters() if p.grad is not None)
    assert all(p.grad is None for p in teacher.parameters())
    opt.step()
    assert not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, stats[k]), f"teacher {k} moved"
    assert not any(p is q for p in m.trainable_parameters() for q in teacher.parameters())


@pytest.mark.parametrize("name", ["at", "nst", "fsp", "kdsvd"])
def test_zero_distillation_loss_when_student_is_the_teacher(name: str, batch) -> None:
    x, y = batch
    teacher = _calibrated("resnet14", 1)
    m = _build(name, teacher, copy.deepcopy(teacher))
    m.eval()  # same batch-norm behaviour on both sides
    if name == "fsp":
        assert m.fsp_loss(x).item() == pytest.approx(0.0, abs=1e-8)
        return
    _, losses = m.forward_train(x, y, torch.arange(8))
    key = {"at": "at", "nst": "nst", "kdsvd": "svd"}[name]
    assert losses[key].item() == pytest.approx(0.0, abs=1e-5)


def test_pretraining_stages_train_the_right_parts() -> None:
    teacher, student = _calibrated("wrn_16_2", 1), _calibrated("resnet8", 2)
    seen: dict[str, tuple[set[int], int]] = {}
    for name in ("ab", "fsp", "ft"):
        m = _build(name, teacher, copy.deepcopy(student))

        def fit(module: nn.Module, n: int, name: str = name) -> None:
            seen[name] = ({id(p) for p in module.trainable_parameters()}, n)
            module.train()
            assert not teacher.training

        used = m.pretrain(fit, 16)
        params, n = seen[name]
        assert used == n and 1 <= n < 16
        assert not params & {id(p) for p in teacher.parameters()}
        if name == "ft":
            assert params == {id(p) for p in m.paraphraser.parameters()}
            assert all(not p.requires_grad for p in m.paraphraser.parameters())
            m.train()
            assert not m.paraphraser.training  # the trained paraphraser stays a fixed target
        else:
            assert {id(p) for p in m.student.parameters()} <= params
            extra = m.connectors if name == "ab" else m.adapters
            assert {id(p) for p in extra.parameters()} <= params
            assert all(not p.requires_grad for p in extra.parameters())  # frozen for the main stage
    assert seen["ab"][1] == 1 and seen["fsp"][1] == 2 and seen["ft"][1] == 2  # 0.05 and 0.125 of 16
    # No room for a second stage in a one-epoch budget.
    assert _build("ab", teacher, copy.deepcopy(student)).pretrain(lambda m, n: None, 1) == 0


# --------------------------------------------------------------------------------------------
# Short real training runs on digits


@pytest.mark.parametrize("teacher_arch", ["resnet14", "wrn_16_2"], ids=["same-arch", "cross-arch"])
@pytest.mark.parametrize("name", METHODS)
def test_short_run_on_digits(name: str, teacher_arch: str, small_digits: Splits) -> None:
    teacher = _calibrated(teacher_arch, 3)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cls = get_method(name)
    recipe = Recipe(epochs=2, batch_size=128)
    r, _ = train_student(method=name, config=dict(cls.default_config()), splits=small_digits, student_arch="resnet8",
               teacher=teacher, recipe=recipe, seed=0)
    assert r.status == "ok", r.reason
    assert r.val_acc and all(math.isfinite(a) for a in r.val_acc)
    assert r.epochs == recipe.epochs
    if name in MULTI_STAGE:
        assert r.pretrain_epochs > 0 and r.pretrain_epochs + len(r.val_acc) == recipe.epochs
    else:
        assert r.pretrain_epochs == 0 and len(r.val_acc) == recipe.epochs
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher {k} moved during training"
