"""AutoAugment's CIFAR-10 policy (Cubuk et al. 2019) as the seed survey's UDA used it, batched.

The survey (karanchahal/distiller, ``distillers/uda_distiller.py``) applied a PIL implementation
of the policy to each image: one of 25 sub-policies chosen uniformly, then its two operations,
each with its own probability and a fixed magnitude (an index 0-9 into the operation's range),
with a random sign for the signed ones. Here every sample of a batch draws its own sub-policy,
coin flips and signs from the run's generator, and each operation runs once per batch on the
samples that drew it.

The operations work on 8-bit pixel values, as PIL's do: the normalised batch is taken back to
[0, 255], rounded, transformed and normalised again. They follow PIL's arithmetic (blends
truncate, the smoothing filter rounds and keeps the border, greyscale is ITU-R 601-2 in 16-bit
fixed point, histograms are per channel), so an image gives PIL's pixels: tests/test_autoaugment.py
checks every operation at every magnitude against PIL itself. As in the survey's code, geometric
operations fill with grey 128, translations and rotations sample the nearest pixel, shears are
bicubic (PIL's cubic with a = -1), and rotations always turn counter-clockwise (its sign draw is
commented out there).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

FILL = 128.0
LEVELS = 10
# Magnitude of each operation at index 0..9 (the survey's ranges).
RANGES: dict[str, list[float]] = {
    "shearX": [0.3 * i / 9 for i in range(LEVELS)],
    "shearY": [0.3 * i / 9 for i in range(LEVELS)],
    "translateX": [150 / 331 * i / 9 for i in range(LEVELS)],
    "translateY": [150 / 331 * i / 9 for i in range(LEVELS)],
    "rotate": [30 * i / 9 for i in range(LEVELS)],
    "color": [0.9 * i / 9 for i in range(LEVELS)],
    "posterize": [float(round(8 - 4 * i / 9)) for i in range(LEVELS)],  # bits kept: 8 8 7 7 6 6 5 5 4 4
    "solarize": [256 - 256 * i / 9 for i in range(LEVELS)],  # threshold
    "contrast": [0.9 * i / 9 for i in range(LEVELS)],
    "sharpness": [0.9 * i / 9 for i in range(LEVELS)],
    "brightness": [0.9 * i / 9 for i in range(LEVELS)],
    "autocontrast": [0.0] * LEVELS,
    "equalize": [0.0] * LEVELS,
    "invert": [0.0] * LEVELS,
}
# The 25 sub-policies: (probability, operation, magnitude index) twice.
CIFAR10_POLICY: tuple[tuple[float, str, int, float, str, int], ...] = (
    (0.1, "invert", 7, 0.2, "contrast", 6),
    (0.7, "rotate", 2, 0.3, "translateX", 9),
    (0.8, "sharpness", 1, 0.9, "sharpness", 3),
    (0.5, "shearY", 8, 0.7, "translateY", 9),
    (0.5, "autocontrast", 8, 0.9, "equalize", 2),
    (0.2, "shearY", 7, 0.3, "posterize", 7),
    (0.4, "color", 3, 0.6, "brightness", 7),
    (0.3, "sharpness", 9, 0.7, "brightness", 9),
    (0.6, "equalize", 5, 0.5, "equalize", 1),
    (0.6, "contrast", 7, 0.6, "sharpness", 5),
    (0.7, "color", 7, 0.5, "translateX", 8),
    (0.3, "equalize", 7, 0.4, "autocontrast", 8),
    (0.4, "translateY", 3, 0.2, "sharpness", 6),
    (0.9, "brightness", 6, 0.2, "color", 8),
    (0.5, "solarize", 2, 0.0, "invert", 3),
    (0.2, "equalize", 0, 0.6, "autocontrast", 0),
    (0.2, "equalize", 8, 0.8, "equalize", 4),
    (0.9, "color", 9, 0.6, "equalize", 6),
    (0.8, "autocontrast", 4, 0.2, "solarize", 8),
    (0.1, "brightness", 3, 0.7, "color", 0),
    (0.4, "solarize", 5, 0.9, "autocontrast", 3),
    (0.9, "translateY", 9, 0.7, "translateY", 9),
    (0.9, "autocontrast", 2, 0.8, "solarize", 3),
    (0.8, "equalize", 8, 0.1, "invert", 3),
    (0.7, "translateY", 9, 0.9, "autocontrast", 1),
)

Op = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (pixels m x C x H x W, magnitude m, sign m)


# --- intensity ---------------------------------------------------------------------------------


def _grey(px: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("L")``: (19595 R + 38470 G + 7471 B + 2^15) >> 16, as m x 1 x H x W."""
    if px.shape[1] == 1:
        return px
    r, g, b = px[:, 0:1].long(), px[:, 1:2].long(), px[:, 2:3].long()
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(px.dtype)


def _blend(degenerate: torch.Tensor, px: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, px, factor)``: float32 arithmetic, truncated, clipped."""
    f = factor.to(torch.float32).view(-1, 1, 1, 1)
    return (degenerate + f * (px - degenerate)).clamp(0, 255).trunc()


def _factor(magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    return (1.0 + magnitude.double() * sign.double()).float()  # computed in double, passed to C as float


def _color(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return _blend(_grey(px).expand_as(px), px, _factor(m, s))


def _contrast(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    mean = torch.floor(_grey(px).double().mean(dim=(1, 2, 3), keepdim=True) + 0.5).to(px.dtype)
    return _blend(mean.expand_as(px), px, _factor(m, s))


def _brightness(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(px), px, _factor(m, s))


def _sharpness(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    # PIL's SMOOTH filter, (8 neighbours + 5 x centre) / 13, rounded. The sum is an exact integer, and
    # an integer over 13 is never within 0.03 of a rounding boundary, so any summation order (PIL's,
    # a GPU's) rounds the same way; the one-pixel border is kept as it was, as PIL's 3x3 filter does.
    h, w = px.shape[2:]
    total = 5 * px[:, :, 1:-1, 1:-1]
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                total = total + px[:, :, dy:dy + h - 2, dx:dx + w - 2]
    smooth = px.clone()
    smooth[:, :, 1:-1, 1:-1] = torch.round(total / 13.0).clamp(0, 255)
    return _blend(smooth, px, _factor(m, s))


def _posterize(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    step = torch.pow(2.0, 8.0 - m).to(px.dtype).view(-1, 1, 1, 1)
    return torch.floor(px / step) * step


def _solarize(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.where(px < m.to(px.dtype).view(-1, 1, 1, 1), px, 255.0 - px)


def _invert(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return 255.0 - px


def _histogram(px: torch.Tensor) -> torch.Tensor:
    """Per sample and channel: counts of the 256 levels, m x C x 256 (int64)."""
    m, c = px.shape[:2]
    levels = px.long().flatten(2)
    return torch.zeros(m, c, 256, dtype=torch.long, device=px.device).scatter_add_(2, levels, torch.ones_like(levels))


def _apply_lut(px: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    return torch.gather(lut.to(px.dtype), 2, px.long().flatten(2)).view_as(px)


def _autocontrast(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    flat = px.flatten(2).double()
    lo, hi = flat.min(2, keepdim=True).values, flat.max(2, keepdim=True).values  # m x C x 1
    span = (hi - lo).clamp(min=1)
    scale = torch.full_like(span, 255.0) / span  # a true division: 255.0 / t is 255 * (1 / t) in torch
    levels = torch.arange(256, dtype=torch.float64, device=px.device)
    lut = torch.trunc(levels * scale - lo * scale).clamp(0, 255)
    lut = torch.where(hi > lo, lut, levels.expand_as(lut))
    return _apply_lut(px, lut)


def _equalize(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    h = _histogram(px)
    levels = torch.arange(256, device=px.device)
    top = torch.where(h > 0, levels, -1).argmax(2, keepdim=True)  # highest level present
    step = (h.sum(2, keepdim=True) - h.gather(2, top)) // 255
    before = torch.cumsum(h, 2) - h  # pixels below each level
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(max=255)  # the top level can reach 256
    keep = (step == 0) | ((h > 0).sum(2, keepdim=True) <= 1)
    lut = torch.where(keep, levels.expand_as(lut), lut)
    return _apply_lut(px, lut)


# --- geometry ----------------------------------------------------------------------------------


def _pixel_centres(px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = px.shape[2:]
    ys = torch.arange(h, device=px.device, dtype=torch.float64) + 0.5
    xs = torch.arange(w, device=px.device, dtype=torch.float64) + 0.5
    return ys.view(1, h, 1), xs.view(1, 1, w)


def _sample_nearest(px: torch.Tensor, xin: torch.Tensor, yin: torch.Tensor) -> torch.Tensor:
    """PIL's nearest filter: pixel floor(coordinate), grey where the coordinate leaves the image."""
    m, c, h, w = px.shape
    xi, yi = torch.floor(xin).long(), torch.floor(yin).long()  # m x h x w
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    flat = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).view(m, 1, h * w).expand(m, c, h * w)
    out = torch.gather(px.flatten(2), 2, flat).view(m, c, h, w)
    return torch.where(inside[:, None], out, torch.full_like(out, FILL))


def _translate(axis: int) -> Op:
    def op(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        n, _, h, w = px.shape
        ys, xs = _pixel_centres(px)
        shift = (m.double() * (w if axis == 0 else h) * s.double()).view(-1, 1, 1)  # PIL: magnitude x image side
        xin = (xs + shift if axis == 0 else xs).expand(n, h, w)
        yin = (ys + shift if axis == 1 else ys).expand(n, h, w)
        return _sample_nearest(px, xin, yin)

    return op


def _rotation_fixed(angle: float, w: int, h: int) -> list[int]:
    """PIL's ``rotate(angle)`` matrix (output pixel -> input pixel, entries rounded to 15 decimals)
    in the 16.16 fixed point its nearest-neighbour affine transform steps through, origin folded
    in: [x step, y step, x at the first pixel centre, then the same for y]."""
    t = -math.radians(angle)
    a, b, d, e = round(math.cos(t), 15), round(math.sin(t), 15), round(-math.sin(t), 15), round(math.cos(t), 15)
    cx, cy = w / 2.0, h / 2.0
    c, f = a * -cx + b * -cy + cx, d * -cx + e * -cy + cy

    def fix(v: float) -> int:
        return math.floor(v * 65536.0 + 0.5)

    return [fix(a), fix(b), fix(c + a * 0.5 + b * 0.5), fix(d), fix(e), fix(f + d * 0.5 + e * 0.5)]


def _rotate(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """PIL's ``rotate(angle)``: counter-clockwise about the centre, nearest pixel, grey outside,
    with PIL's fixed-point coordinates (so boundary pixels land where PIL puts them)."""
    n, _, h, w = px.shape
    fixed = torch.tensor([_rotation_fixed(float(a), w, h) for a in m.tolist()], dtype=torch.long, device=px.device)
    f = fixed.view(n, 6, 1, 1)
    ys = torch.arange(h, device=px.device).view(1, h, 1)
    xs = torch.arange(w, device=px.device).view(1, 1, w)
    xin = torch.div(f[:, 2] + xs * f[:, 0] + ys * f[:, 1], 65536, rounding_mode="floor")
    yin = torch.div(f[:, 5] + xs * f[:, 3] + ys * f[:, 4], 65536, rounding_mode="floor")
    return _sample_nearest(px, xin.double(), yin.double())


def _cubic_1d(px: torch.Tensor, coord: torch.Tensor, dim: int) -> torch.Tensor:
    """PIL's bicubic filter along one axis (the other coordinate falls on pixel centres, as in a
    shear): neighbours clamped to the image, grey where the coordinate leaves it, truncated."""
    size = px.shape[dim]
    t = coord - 0.5
    x0 = torch.floor(t)
    d = (t - x0)[:, None]
    x0 = x0.long()
    taps = []
    for k in (-1, 0, 1, 2):
        idx = (x0 + k).clamp(0, size - 1)[:, None].expand_as(px)
        taps.append(torch.gather(px.double(), dim, idx))
    v1, v2, v3, v4 = taps
    p2, p3, p4 = v3 - v1, 2 * (v1 - v2) + v3 - v4, -v1 + v2 - v3 + v4
    v = v2 + d * (p2 + d * (p3 + d * p4))
    out = v.clamp(0, 255).trunc().to(px.dtype)
    inside = ((coord >= 0) & (coord < size))[:, None]
    return torch.where(inside, out, torch.full_like(out, FILL))


def _shear(axis: int) -> Op:
    def op(px: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        ys, xs = _pixel_centres(px)
        k = (m.double() * s.double()).view(-1, 1, 1)
        if axis == 0:  # x_in = x + k y
            return _cubic_1d(px, xs + k * ys, 3)
        return _cubic_1d(px, ys + k * xs, 2)  # y_in = k x + y

    return op


OPS: dict[str, Op] = {
    "shearX": _shear(0), "shearY": _shear(1), "translateX": _translate(0), "translateY": _translate(1),
    "rotate": _rotate, "color": _color, "posterize": _posterize, "solarize": _solarize, "contrast": _contrast,
    "sharpness": _sharpness, "brightness": _brightness, "autocontrast": _autocontrast, "equalize": _equalize,
    "invert": _invert,
}
_NAMES = list(OPS)
# The policy as tensors: per sub-policy and slot, the probability, operation id and magnitude.
_PROB = torch.tensor([[p[0], p[3]] for p in CIFAR10_POLICY], dtype=torch.float32)
_OP = torch.tensor([[_NAMES.index(p[1]), _NAMES.index(p[4])] for p in CIFAR10_POLICY])
_MAG = torch.tensor([[RANGES[p[1]][p[2]], RANGES[p[4]][p[5]]] for p in CIFAR10_POLICY], dtype=torch.float64)


def apply_op(name: str, pixels: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """One operation on 8-bit pixel values (float, m x C x H x W) with per-sample magnitude and sign."""
    return OPS[name](pixels, magnitude, sign)


def to_pixels(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return torch.round((x * s + m) * 255.0).clamp(0, 255)


def from_pixels(px: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=px.dtype, device=px.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=px.dtype, device=px.device).view(1, -1, 1, 1)
    return (px / 255.0 - m) / s


def draw(n: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """Every random number of a batch: sub-policy per sample, whether each slot applies, its sign."""
    choice = torch.randint(0, len(CIFAR10_POLICY), (n,), generator=generator, device=device)
    u = torch.rand((n, 4), generator=generator, device=device)
    prob = _PROB.to(device)[choice]
    return {
        "choice": choice,
        "apply": u[:, :2] < prob,  # n x 2
        "sign": torch.where(u[:, 2:] < 0.5, -1.0, 1.0).double(),  # n x 2
    }


def autoaugment_cifar10(x: torch.Tensor, generator: torch.Generator, *, mean: tuple[float, ...],
                        std: tuple[float, ...]) -> torch.Tensor:
    """Each sample of the normalised batch ``x`` through a sub-policy of its own."""
    if x.shape[0] == 0:
        return x
    d = draw(x.shape[0], generator, x.device)
    px = to_pixels(x.float(), mean, std)
    ops, mags = _OP.to(x.device)[d["choice"]], _MAG.to(x.device)[d["choice"]]
    for slot in (0, 1):
        for op_id in torch.unique(ops[:, slot][d["apply"][:, slot]]).tolist():
            sel = torch.nonzero(d["apply"][:, slot] & (ops[:, slot] == op_id)).squeeze(1)
            px[sel] = apply_op(_NAMES[op_id], px[sel], mags[sel, slot], d["sign"][sel, slot])
    return from_pixels(px, mean, std).to(x.dtype).contiguous(memory_format=_layout(x))


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format

