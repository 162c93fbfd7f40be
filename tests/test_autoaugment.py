"""AutoAugment's CIFAR-10 policy, checked against PIL (the library the seed survey's policy ran on):
every operation at every magnitude and sign gives PIL's pixels; a whole batch gives, sample by
sample, what the survey's sub-policy would give with the same draws; sub-policies are chosen
uniformly and their operations applied with their probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from scipy import stats

from audit.engine.autoaugment import (
    CIFAR10_POLICY,
    RANGES,
    apply_op,
    autoaugment_cifar10,
    draw,
    to_pixels,
)
from audit.engine.datasets import dataset_info

CIFAR = dataset_info("cifar10")
ENHANCE = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness,
           "brightness": ImageEnhance.Brightness}


def pil_op(img: Image.Image, name: str, mag: float, sign: int) -> Image.Image:
    """The survey's operation (its SubPolicy lambdas) with the random sign fixed to ``sign``."""
    fill = (128,) * len(img.getbands())
    if name in ("shearX", "shearY"):
        coeffs = (1, mag * sign, 0, 0, 1, 0) if name == "shearX" else (1, 0, 0, mag * sign, 1, 0)
        return img.transform(img.size, Image.AFFINE, coeffs, Image.BICUBIC, fillcolor=fill)
    if name == "translateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, mag * img.size[0] * sign, 0, 1, 0), fillcolor=fill)
    if name == "translateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, mag * img.size[1] * sign), fillcolor=fill)
    if name == "rotate":  # no sign: the survey's rotation always turns the same way
        rot = img.convert("RGBA").rotate(mag)
        return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)
    if name in ENHANCE:
        return ENHANCE[name](img).enhance(1 + mag * sign)
    if name == "posterize":
        return ImageOps.posterize(img, int(mag))
    if name == "solarize":
        return ImageOps.solarize(img, mag)
    return {"autocontrast": ImageOps.autocontrast, "equalize": ImageOps.equalize, "invert": ImageOps.invert}[name](img)


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Blocky images with noise and a random value range per image, so contrast, histogram and
    interpolation operations all have work to do (pure noise would span 0-255 already)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lo, hi = rng.integers(0, 100), rng.integers(150, 257)
        base = np.kron(rng.integers(lo, hi, (8, 8, 3)), np.ones((4, 4, 1)))
        out.append(np.clip(base + rng.normal(0, 6, base.shape), lo, hi - 1).astype(np.uint8))
    return np.stack(out)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("name", sorted(RANGES))
def test_every_operation_at_every_magnitude_is_pils(name):
    imgs = _images(8)
    px = _tensor(imgs)
    for level, mag in enumerate(RANGES[name]):
        for sign in (-1, 1):
            ours = apply_op(name, px.clone(), torch.full((8,), mag, dtype=torch.float64),
                            torch.full((8,), float(sign), dtype=torch.float64))
            ref = _tensor(np.stack([np.asarray(pil_op(Image.fromarray(a), name, mag, sign)) for a in imgs]))
            assert torch.equal(ours, ref), f"{name} level {level} sign {sign}: {(ours != ref).sum().item()} pixels differ"


def test_a_batch_is_the_survey_policy_sample_by_sample():
    n = 200
    imgs = _images(n, seed=1)
    mean, std = CIFAR.mean, CIFAR.std
    x = (_tensor(imgs) / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = to_pixels(autoaugment_cifar10(x, torch.Generator().manual_seed(3), mean=mean, std=std), mean, std)
    d = draw(n, torch.Generator().manual_seed(3), x.device)  # the same draws, replayed
    for i in range(n):
        p1, op1, m1, p2, op2, m2 = CIFAR10_POLICY[int(d["choice"][i])]
        img = Image.fromarray(imgs[i])
        if d["apply"][i, 0]:
            img = pil_op(img, op1, RANGES[op1][m1], int(d["sign"][i, 0]))
        if d["apply"][i, 1]:
            img = pil_op(img, op2, RANGES[op2][m2], int(d["sign"][i, 1]))
        assert torch.equal(out[i], _tensor(np.asarray(img)[None])[0]), f"sample {i}"
    assert d["apply"].any(1).float().mean() > 0.5  # most samples were changed


def test_sub_policies_uniform_operations_at_their_probabilities_signs_half():
    n = 100_000
    d = draw(n, torch.Generator().manual_seed(0), torch.device("cpu"))
    counts = torch.bincount(d["choice"], minlength=len(CIFAR10_POLICY))
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    for k, sub in enumerate(CIFAR10_POLICY):
        mine = d["choice"] == k
        for slot, p in enumerate((sub[0], sub[3])):
            hits = int(d["apply"][mine, slot].sum())
            assert stats.binomtest(hits, int(mine.sum()), p).pvalue > 1e-4, (k, slot, p, hits / int(mine.sum()))
    signs = d["sign"] > 0
    assert abs(signs.float().mean().item() - 0.5) < 0.005
    # The two slots' coin flips and signs are independent of each other.
    assert stats.chi2_contingency(np.histogram2d(signs[:, 0].numpy(), signs[:, 1].numpy(), bins=2)[0]).pvalue > 1e-3


def test_layout_dtype_and_empty_batches():
    x = torch.randn(6, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    out = autoaugment_cifar10(x, torch.Generator().manual_seed(0), mean=CIFAR.mean, std=CIFAR.std)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous(memory_format=torch.channels_last)
    empty = x[:0]
    assert autoaugment_cifar10(empty, torch.Generator(), mean=CIFAR.mean, std=CIFAR.std).shape == empty.shape
