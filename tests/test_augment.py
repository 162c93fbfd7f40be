"""Tests for audit.engine.augment: identity at 0, seeded determinism, flips only when allowed, magnitude."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audit.engine.augment import _affine_matrices, augment_batch, strong_augment
from audit.errors import AuditError


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def _batch(n: int = 16, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=_gen(seed))


def test_strength_zero_is_identity():
    x = _batch()
    g = _gen(1)
    state = g.get_state()
    out = augment_batch(x, 0.0, g, hflip=True)
    assert torch.equal(out, x)
    assert torch.equal(g.get_state(), state)  # nothing drawn: later augmentations are unaffected


def test_same_seed_same_output_different_seed_differs():
    x = _batch()
    a = augment_batch(x, 0.7, _gen(5), hflip=True)
    b = augment_batch(x, 0.7, _gen(5), hflip=True)
    c = augment_batch(x, 0.7, _gen(6), hflip=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(strong_augment(x, _gen(3), hflip=False), strong_augment(x, _gen(3), hflip=False))


def test_global_rng_is_neither_used_nor_needed():
    x = _batch()
    torch.manual_seed(0)
    a = augment_batch(x, 0.5, _gen(9), hflip=True)
    state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    b = augment_batch(x, 0.5, _gen(9), hflip=True)
    assert torch.equal(a, b)
    torch.manual_seed(0)
    augment_batch(x, 0.5, _gen(9), hflip=True)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_samples_are_augmented_independently():
    x = _batch(n=2).clone()
    x[1] = x[0]
    out = augment_batch(x, 0.8, _gen(2), hflip=True)
    assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("shape", [(4, 1, 8, 8), (4, 3, 8, 8), (4, 1, 32, 32), (4, 3, 32, 32), (4, 3, 12, 20)])
def test_shape_dtype_device_preserved(shape):
    x = torch.randn(*shape, generator=_gen(0))
    for out in (augment_batch(x, 0.6, _gen(1), hflip=True), strong_augment(x, _gen(1), hflip=False)):
        assert out.shape == x.shape
        assert out.dtype == x.dtype
        assert out.device == x.device
        assert torch.isfinite(out).all()
        assert not torch.equal(out, x)


def test_flip_sign_only_when_allowed():
    det = lambda t: torch.linalg.det(t[:, :, :2])  # noqa: E731 - sign < 0 means mirrored
    no_flip = _affine_matrices(2000, 1.0, _gen(0), False, "cpu", 32, 32)
    assert (det(no_flip) > 0).all()
    with_flip = _affine_matrices(2000, 1.0, _gen(0), True, "cpu", 32, 32)
    d = det(with_flip)
    assert (d > 0).any() and (d < 0).any()
    assert 0.4 < (d < 0).float().mean().item() < 0.6


def test_no_mirror_without_hflip_end_to_end():
    # An image that is left/right asymmetric: every output (small strength) stays closer to the
    # original than to its mirror when flips are off; with flips on some outputs are mirrored.
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 4:12, 2:6] = 2.0
    mirror = x.flip(-1)
    for hflip, expect_mirrors in ((False, False), (True, True)):
        out = augment_batch(x, 0.1, _gen(4), hflip=hflip)
        to_self = (out - x).abs().flatten(1).mean(1)
        to_mirror = (out - mirror).abs().flatten(1).mean(1)
        assert bool((to_mirror < to_self).any()) == expect_mirrors


def test_affine_matrix_magnitudes_bounded():
    t = _affine_matrices(5000, 0.5, _gen(0), False, "cpu", 32, 32)
    assert t[:, :, 2].abs().max() <= 0.5 * 0.25 * 2 + 1e-6  # translation, normalised coords
    scale = torch.linalg.det(t[:, :, :2]).sqrt()
    assert scale.min() >= 1 - 0.5 * 0.15 - 1e-5 and scale.max() <= 1 + 0.5 * 0.15 + 1e-5
    ident = _affine_matrices(10, 0.0, _gen(0), True, "cpu")
    assert torch.allclose(ident, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(10, 2, 3))


def test_magnitude_grows_with_strength():
    x = _batch(n=256)
    change = [(augment_batch(x, s, _gen(7), hflip=False) - x).abs().mean().item() for s in (0.2, 0.8)]
    assert change[0] < change[1]


def test_cutout_fills_with_mean_zero():
    # With a constant image, geometric padding, cutout and contrast all act on the mean (0):
    # the output of an all-zero batch is exactly the brightness offset per sample.
    x = torch.zeros(8, 3, 16, 16)
    out = augment_batch(x, 1.0, _gen(0), hflip=True)
    per_sample = out.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert per_sample[:, 0].abs().max() <= 0.4 + 1e-6


def test_strong_adds_a_second_cutout():
    x = _batch(n=256)
    plain = augment_batch(x, 1.0, _gen(0), hflip=False)
    strong = strong_augment(x, _gen(0), hflip=False)
    # same draws up to the second cutout, so strong only differs where it set pixels to 0 (the mean)
    changed = strong.ne(plain)
    assert changed.any()
    assert (strong[changed] == 0).all()


def test_grid_sample_matches_identity_matrix():
    # sanity check of the conventions used (align_corners=False): identity theta is exact
    x = _batch(n=2, h=8, w=8)
    grid = F.affine_grid(torch.eye(2, 3).expand(2, 2, 3), list(x.shape), align_corners=False)
    assert torch.allclose(F.grid_sample(x, grid, align_corners=False), x, atol=1e-5)


def test_bad_inputs_are_audit_errors():
    x = _batch(n=2)
    with pytest.raises(AuditError):
        augment_batch(x, 1.5, _gen(0), hflip=False)
    with pytest.raises(AuditError):
        augment_batch(x, -0.1, _gen(0), hflip=False)
    with pytest.raises(AuditError):
        augment_batch(x[0], 0.5, _gen(0), hflip=False)
    with pytest.raises(AuditError):
        augment_batch(x.to(torch.uint8), 0.5, _gen(0), hflip=False)
