"""Golden values for the classical KD loss (Hinton et al. 2015), worked out by hand."""
import math

import torch

from methods.base import kd_divergence


def _softmax(z, t):
    e = [math.exp(v / t) for v in z]
    s = sum(e)
    return [v / s for v in e]


def test_kd_divergence_matches_hand_computation():
    s, t, T = [1.0, 2.0, 0.5], [0.2, 3.0, -1.0], 2.0
    ps, pt = _softmax(s, T), _softmax(t, T)
    by_hand = sum(b * math.log(b / a) for a, b in zip(ps, pt)) * T * T
    got = kd_divergence(torch.tensor([s]), torch.tensor([t]), T).item()
    assert abs(got - by_hand) < 1e-6


def test_kd_divergence_is_batchmean():
    # Two samples: the loss is the mean of the per-sample KLs, not the sum or the element mean.
    s = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    ps, pt = _softmax([1.0, 0.0], 1.0), _softmax([0.0, 1.0], 1.0)
    kl0 = sum(b * math.log(b / a) for a, b in zip(ps, pt))
    assert abs(kd_divergence(s, t, 1.0).item() - kl0 / 2) < 1e-6


def test_kd_divergence_zero_when_equal_and_scaled_by_t_squared():
    z = torch.randn(4, 10)
    assert kd_divergence(z, z.clone(), 4.0).abs().item() < 1e-6
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    # At T, the logits divided by T: the KL is that of the scaled logits, times T^2.
    assert torch.allclose(kd_divergence(a, b, 3.0), kd_divergence(a / 3.0, b / 3.0, 1.0) * 9.0, atol=1e-6)


def test_kd_method_mixes_ce_and_kd_by_alpha(digits):
    import torch.nn.functional as F

    from audit.engine.models import build_model
    from methods.base import Context, FeatureShapes
    from methods.kd import KD

    torch.manual_seed(0)
    student = build_model("resnet8", in_channels=1, num_classes=10)
    teacher = build_model("resnet14", in_channels=1, num_classes=10)
    x, y = digits.train.x[:8], digits.train.y[:8]
    ctx = Context(FeatureShapes.of(student, x), FeatureShapes.of(teacher, x), len(digits.train))
    m = KD(student, teacher, {"alpha": 0.3, "temperature": 2.0}, ctx).train()
    logits, losses = m.forward_train(x, y, torch.arange(8))
    with torch.no_grad():
        t_logits, _ = teacher(x)
    assert torch.allclose(losses["ce"], 0.7 * F.cross_entropy(logits, y))
    assert torch.allclose(losses["kd"], 0.3 * kd_divergence(logits, t_logits, 2.0))
