"""Paper defaults at the official scale (issue 11, item 4), in the style of torchdistill's
golden-value loss tests: on fixed tensors, our loss at a method's paper defaults, or at the values
a claim source's preset gives it, equals the loss its authors' (or the source's) public code
computes, re-stated here independently from reading that code (plain torch and numpy arithmetic,
none of the modules' helpers).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audit.engine.models import build_model
from audit.judge.claims import load_claims
from audit.reproduce.presets import load_presets
from audit.reproduce.protocol import find_claims, resolve
from methods import get_method
from methods.base import Context, FeatureShapes

torch.set_num_threads(1)
C = 100  # CIFAR-100, the benchmark's data set


@pytest.fixture(scope="module")
def registry():
    return load_claims()


def _claim_config(registry, claim_id: str) -> tuple[str, dict, dict]:
    p = resolve(find_claims([claim_id], registry)[0])
    return p.method, p.config, p.options


def _preset_config(preset: str, method: str) -> dict:
    table = load_presets()[preset].methods[method]
    skip = ("cite", "paper_protocol", "options", "departures", "by_pair", "by_dataset")
    return {**get_method(method).defaults, **{k: v for k, v in table.items() if k not in skip}}


def _build(method: str, config: dict, teacher: str = "resnet14", student: str = "resnet8", *, hw: int = 16,
           options: dict | None = None, batch: int = 6):
    """The method on two eval-mode networks (fixed batch-norm statistics), a fixed batch and labels."""
    torch.manual_seed(0)
    s_net = build_model(student, in_channels=3, num_classes=C).eval()
    t_net = build_model(teacher, in_channels=3, num_classes=C).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, hw, hw, generator=g)
    y = torch.randint(0, C, (batch,), generator=g)
    ctx = Context(FeatureShapes.of(s_net, x), FeatureShapes.of(t_net, x), 50_000, epochs=240, options=dict(options or {}))
    m = get_method(method)(s_net, t_net, dict(config), ctx).eval()
    return m, s_net, t_net, x, y


def _losses(m, x, y) -> dict[str, float]:  # noqa: ANN001
    with torch.no_grad():
        _, losses = m.forward_train(x, y, torch.arange(len(x)))
    return {k: float(v) for k, v in losses.items()}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _ce(z: np.ndarray, y: torch.Tensor) -> float:
    return float(-_log_softmax(z)[np.arange(len(z)), y.numpy()].mean())


def _kl_sum(zs: np.ndarray, zt: np.ndarray, temp: float) -> np.ndarray:
    """Per sample: sum over classes of p_t (log p_t - log p_s) at temperature ``temp``."""
    ls, lt = _log_softmax(zs / temp), _log_softmax(zt / temp)
    return (np.exp(lt) * (lt - ls)).sum(axis=1)


def _logits(s_net, t_net, x):  # noqa: ANN001, ANN202
    with torch.no_grad():
        return _np(s_net(x)[0]), _np(t_net(x)[0])


# ---------------------------------------------------------------------------------------------
# logit methods


def test_kd_at_the_crd_benchmarks_values(registry) -> None:
    """RepDistiller: 0.1 CE + 0.9 DistillKL(T=4), DistillKL = kl_div(sum) * T^2 / batch."""
    method, config, _ = _claim_config(registry, "C001")
    m, s, t, x, y = _build(method, config)
    zs, zt = _logits(s, t, x)
    authors = 0.1 * _ce(zs, y) + 0.9 * _kl_sum(zs, zt, 4.0).sum() * 16 / len(x)
    assert sum(_losses(m, x, y).values()) == pytest.approx(authors, rel=1e-5)


def test_dist_at_tau_4_carries_the_authors_tau_squared() -> None:
    """The DIST authors' loss (mmrazor's DISTLoss): tau^2 (beta (1 - mean row Pearson) + gamma (1 -
    mean column Pearson)), Pearson as their centred cosine (a . b) / (|a| |b| + 1e-8)."""
    m, s, t, x, y = _build("dist", {**get_method("dist").defaults, "temperature": 4.0})
    zs, zt = _logits(s, t, x)
    ps, pt = np.exp(_log_softmax(zs / 4.0)), np.exp(_log_softmax(zt / 4.0))

    def pearson(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-8))

    inter = 1 - np.mean([pearson(ps[i], pt[i]) for i in range(len(ps))])
    intra = 1 - np.mean([pearson(ps[:, j], pt[:, j]) for j in range(ps.shape[1])])
    got = _losses(m, x, y)
    assert got["inter"] == pytest.approx(16 * inter, rel=1e-4) and got["intra"] == pytest.approx(16 * intra, rel=1e-4)


def test_lskd_at_its_defaults_is_the_authors_code() -> None:
    """logit-standardization-KD: normalize() with torch.std (n - 1) + 1e-7; CE 1 + 9 T^2 KL at T = 2."""
    m, s, t, x, y = _build("lskd", get_method("lskd").defaults)
    zs, zt = _logits(s, t, x)

    def z(a: np.ndarray) -> np.ndarray:
        return (a - a.mean(1, keepdims=True)) / (1e-7 + a.std(1, ddof=1, keepdims=True))

    authors = _ce(zs, y) + 9 * 4 * _kl_sum(z(zs), z(zt), 2.0).mean()
    assert sum(_losses(m, x, y).values()) == pytest.approx(authors, rel=1e-5)


def test_takd_at_its_defaults_averages_the_kl_over_classes_as_its_authors(registry) -> None:
    """Mirzadeh et al.'s train.py: (1 - l) CE + l T^2 nn.KLDivLoss() (mean over batch AND classes)."""
    m, s, t, x, y = _build("takd", get_method("takd").defaults, options={"assistant": "resnet8"})
    zs, zt = _logits(s, t, x)
    authors = 0.5 * _ce(zs, y) + 0.5 * 25 * _kl_sum(zs, zt, 5.0).sum() / (len(x) * C)
    assert sum(_losses(m, x, y).values()) == pytest.approx(authors, rel=1e-5)
    # The seed survey's TAKD (its KDTrainer: KL summed, divided by the batch), at its preset's values.
    method, config, options = _claim_config(registry, "C368")
    m, s, t, x, y = _build(method, config, options={"assistant": "resnet8"})
    zs, zt = _logits(s, t, x)
    survey = 0.5 * _ce(zs, y) + 0.5 * 25 * _kl_sum(zs, zt, 5.0).sum() / len(x)
    assert sum(_losses(m, x, y).values()) == pytest.approx(survey, rel=1e-5)


def test_dkd_at_mdistillers_values_for_the_pair(registry) -> None:
    """mdistiller's dkd_loss after the warm-up: CE + (alpha TCKD + beta NCKD) T^2, beta 2 for resnet56 -> resnet20."""
    method, config, _ = _claim_config(registry, "C184")
    assert config["dkd_beta"] == 2.0
    m, s, t, x, y = _build(method, config)
    m.images_seen = 10**9  # past the warm-up
    zs, zt = _logits(s, t, x)
    ps, pt = np.exp(_log_softmax(zs / 4)), np.exp(_log_softmax(zt / 4))
    gt = np.eye(C, dtype=bool)[y.numpy()]
    b_s = np.stack([ps[gt], 1 - ps[gt]], 1)
    b_t = np.stack([pt[gt], 1 - pt[gt]], 1)
    tckd = (b_t * np.log(b_t / b_s)).sum(1).mean() * 16
    # mdistiller masks the target logit with -1000 before the non-target softmax.
    nckd = _kl_sum(np.where(gt, -1000.0 * 4, zs), np.where(gt, -1000.0 * 4, zt), 4.0).mean() * 16
    assert sum(_losses(m, x, y).values()) == pytest.approx(_ce(zs, y) + 1.0 * tckd + 2.0 * nckd, rel=1e-5)


def test_ab_second_stage_at_its_defaults_and_at_the_surveys_values() -> None:
    """AB's authors (train_KD): the KL at T = 3 summed over classes, / batch, no T^2, no CE. The
    seed survey's AB then trains with its KDTrainer: (1 - l) CE + l T^2 KL at T = 5, l = 0.5."""
    m, s, t, x, y = _build("ab", get_method("ab").defaults)
    zs, zt = _logits(s, t, x)
    assert sum(_losses(m, x, y).values()) == pytest.approx(_kl_sum(zs, zt, 3.0).mean(), rel=1e-5)
    m, s, t, x, y = _build("ab", _preset_config("seed_survey", "ab"))
    zs, zt = _logits(s, t, x)
    survey = 0.5 * _ce(zs, y) + 0.5 * 25 * _kl_sum(zs, zt, 5.0).mean()
    assert sum(_losses(m, x, y).values()) == pytest.approx(survey, rel=1e-5)


def test_kd_at_haitonglis_converted_alpha_keeps_its_ratio() -> None:
    """haitongli's loss_fn_kd: 0.95 T^2 nn.KLDivLoss() (mean over batch and 10 classes) + 0.05 CE, T = 6:
    the preset's alpha gives its CE:KD ratio, at a total scale the preset names (6.9)."""
    torch.manual_seed(0)
    config = _preset_config("haitongli", "kd")
    zs, zt = np.random.default_rng(0).normal(size=(2, 8, 10)) * 3
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    ours_ce, ours_kd = (1 - config["alpha"]) * _ce(zs, y), config["alpha"] * 36 * _kl_sum(zs, zt, 6.0).mean()
    theirs_ce, theirs_kd = 0.05 * _ce(zs, y), 0.95 * 36 * _kl_sum(zs, zt, 6.0).sum() / (8 * 10)
    assert ours_kd / ours_ce == pytest.approx(theirs_kd / theirs_ce, rel=1e-3)
    assert (ours_ce + ours_kd) / (theirs_ce + theirs_kd) == pytest.approx(6.9, rel=0.01)


# ---------------------------------------------------------------------------------------------
# feature methods


def _mmd2(f_s: torch.Tensor, f_t: torch.Tensor) -> float:
    """RepDistiller's NSTLoss.nst_loss: channel maps L2-normalised over positions, (a . b)^2 kernel."""
    def norm(f: torch.Tensor) -> np.ndarray:
        a = _np(f).reshape(f.shape[0], f.shape[1], -1)
        return a / np.maximum(np.linalg.norm(a, axis=2, keepdims=True), 1e-12)

    s, t = norm(f_s), norm(f_t)
    k = lambda a, b: (np.einsum("bik,bjk->bij", a, b) ** 2).mean()  # noqa: E731
    return float(k(t, t) + k(s, s) - 2 * k(s, t))


def test_nst_at_the_crd_benchmarks_weight(registry) -> None:
    """RepDistiller's -b 50 times the sum over stages of MMD^2 (no 1/2): the preset's beta = 100."""
    rows = registry[registry.source.str.startswith("HobbitLong") & (registry.method_id == "nst")
                    & (registry.teacher_id == "resnet56")]
    p = resolve(rows.iloc[0])
    m, s, t, x, y = _build("nst", p.config)
    with torch.no_grad():
        fs, ft = s(x)[1], t(x)[1]
    authors = 50 * sum(_mmd2(fs.post[i], ft.post[i]) for i in (1, 2, 3))
    assert _losses(m, x, y)["nst"] == pytest.approx(authors, rel=1e-4)


def _pool(a: torch.Tensor, hw: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(a, (hw, hw)) if a.shape[-1] > hw else a


def test_at_pools_features_before_attention_as_the_crd_benchmark() -> None:
    """RepDistiller's Attention.at_loss on unequal sizes: the larger feature map pooled first, then
    at(f) = normalize(mean_c f^2), mean squared difference, times -b 1000."""
    m, s, t, x, y = _build("at", _preset_config("repdistiller", "at"), teacher="resnet32x4", student="shufflenet_v2", hw=32)
    with torch.no_grad():
        fs, ft = s(x)[1], t(x)[1]
    total = 0.0
    for i, j in zip(m.s_idx, m.t_idx):
        a, b = fs.post[i], ft.post[j]
        hw = min(a.shape[-1], b.shape[-1])
        a, b = _pool(a, hw), _pool(b, hw)
        q = [F.normalize(f.pow(2).mean(1).flatten(1), dim=1) for f in (a, b)]
        total += float((q[0] - q[1]).pow(2).mean())
    assert any(fs.post[i].shape[-1] != ft.post[j].shape[-1] for i, j in zip(m.s_idx, m.t_idx))  # sizes do differ
    assert _losses(m, x, y)["at"] == pytest.approx(1000 * total, rel=1e-4)


def test_the_kd_zoos_stage_average_is_a_third_of_its_lambda() -> None:
    """The zoo's AT: lambda 1000 times the MEAN over its 3 stages; the preset's beta 1000/3 sums them."""
    m, s, t, x, y = _build("at", _preset_config("kd_zoo", "at"), teacher="resnet20", student="resnet20")
    with torch.no_grad():
        fs, ft = s(x)[1], t(x)[1]
    per_stage = [float((F.normalize(a.pow(2).mean(1).flatten(1), dim=1) - F.normalize(b.pow(2).mean(1).flatten(1), dim=1)).pow(2).mean())
                 for a, b in ((fs.post[i], ft.post[i]) for i in (1, 2, 3))]
    assert _losses(m, x, y)["at"] == pytest.approx(1000 * np.mean(per_stage), rel=1e-4)


def test_ft_at_its_authors_default_and_at_the_crd_benchmarks_factor() -> None:
    """Factor-Transfer-pytorch: beta 500 x mean |F_S/|F_S| - F_T/|F_T|| on flattened factors.
    RepDistiller's FactorTransfer: -b 200 x mean |normalize(mean_c F_S^2) - normalize(mean_c F_T^2)|."""
    for config, factor, weight in ((get_method("ft").defaults, lambda f: f.flatten(1), 500.0),
                                   (_preset_config("repdistiller", "ft"), lambda f: f.pow(2).mean(1).flatten(1), 200.0)):
        m, s, t, x, y = _build("ft", config)
        m._paraphraser_frozen = True
        with torch.no_grad():
            fs, ft = s(x)[1], t(x)[1]
            f_s, f_t = m.translator(fs.post[-1]), m.paraphraser.encoder(ft.post[-1])
        authors = weight * float((F.normalize(factor(f_s), dim=1) - F.normalize(factor(f_t), dim=1)).abs().mean())
        assert _losses(m, x, y)["ft"] == pytest.approx(authors, rel=1e-4)


def test_cc_at_the_crd_benchmarks_correlation_and_the_zoos_kernel() -> None:
    """RepDistiller's Correlation (-b 0.02): d = |e_s - e_t| on plain linear embeddings, mean_i sum_k d_i d_i+1.
    The zoo's CC (lambda 100): F.mse_loss of the Taylor-RBF matrices (gamma 0.4, P 2) of normalised features."""
    m, s, t, x, y = _build("cc", _preset_config("repdistiller", "cc"))
    with torch.no_grad():
        e_s, e_t = m.embed_s(s(x)[1].pooled), m.embed_t(t(x)[1].pooled)
    d = _np((e_s - e_t).abs())
    assert _losses(m, x, y)["cc"] == pytest.approx(0.02 * float((d[:-1] * d[1:]).sum(1).mean()), rel=1e-5)

    m, s, t, x, y = _build("cc", _preset_config("kd_zoo", "cc"))
    with torch.no_grad():
        e_s, e_t = m.embed_s(s(x)[1].pooled), m.embed_t(t(x)[1].pooled)

    def kernel(e: torch.Tensor) -> np.ndarray:
        a = _np(F.normalize(e, dim=1))
        sim = a @ a.T
        return sum(math.exp(-0.8) * 0.8**p / math.factorial(p) * sim**p for p in range(3))

    authors = 100 * float(((kernel(e_s) - kernel(e_t)) ** 2).mean())
    assert _losses(m, x, y)["cc"] == pytest.approx(authors, rel=1e-5)
