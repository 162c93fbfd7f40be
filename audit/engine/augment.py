"""Batched, per-sample random augmentation on the batch's own device, driven by one ``strength``.

Why our own ``affine_grid`` code rather than kornia: kornia's random augmentations draw from
torch's *global* RNG (still so in kornia 0.9.0; see ``audit.engine.policies``), so two trials running in one process (or a trial resumed later) would see
different augmentations for the same seed, which breaks "a run is a pure function of (config,
seed)". Here every random number comes from the caller's ``torch.Generator``. Translation,
rotation, scale and flip are also fused into one per-sample affine matrix, so the geometric part
is a single ``grid_sample`` kernel per batch instead of one per transform.

Inputs are normalised (per-channel mean 0), so 0 is "the mean": zeros padding and cutout both
fill with the data set's mean colour rather than black.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from audit.errors import AuditError

# Largest magnitudes, reached at strength 1.0.
MAX_TRANSLATE = 0.25  # fraction of the image size
MAX_ROTATE_DEG = 20.0
MAX_SCALE = 0.15  # scale in 1 +- this
MAX_CUTOUT = 0.5  # side of the cutout square, fraction of the shorter image side
MAX_COLOUR = 0.4  # brightness offset (in std units) and contrast factor 1 +- this

# Columns of the one random draw per batch for the affine part; drawn even when unused (e.g. the
# flip column with hflip=False) so that one option never shifts the numbers the others get.
_N_AFFINE = 5  # tx, ty, angle, scale, flip


def _check(x: torch.Tensor, strength: float, generator: torch.Generator) -> None:
    if not 0.0 <= strength <= 1.0:
        raise AuditError(f"augmentation strength must be in [0, 1], got {strength}")
    if x.ndim != 4 or not x.is_floating_point():
        raise AuditError(f"augmentation needs a float N x C x H x W batch, got {tuple(x.shape)} {x.dtype}")
    if generator.device.type != x.device.type:
        raise AuditError(f"augmentation generator is on {generator.device}, the batch on {x.device}")


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform in [-1, 1), float32, from ``generator`` only."""
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32) * 2.0 - 1.0


def _affine_matrices(
    n: int,
    strength: float,
    generator: torch.Generator,
    hflip: bool,
    device: torch.device | str,
    height: int = 1,
    width: int = 1,
) -> torch.Tensor:
    """Per-sample ``affine_grid`` matrices (n x 2 x 3, float32), output coords -> input coords.

    ``height``/``width`` only correct the rotation for non-square images (normalised
    coordinates stretch x and y differently); for square images they do not matter.
    """
    device = torch.device(device)
    u = _uniform((n, _N_AFFINE), generator, device)
    tx = u[:, 0] * (strength * MAX_TRANSLATE * 2.0)  # normalised coords span 2 per image side
    ty = u[:, 1] * (strength * MAX_TRANSLATE * 2.0)
    angle = u[:, 2] * math.radians(strength * MAX_ROTATE_DEG)
    scale = 1.0 + u[:, 3] * (strength * MAX_SCALE)
    if hflip and strength > 0:
        flip = torch.where(u[:, 4] < 0, -1.0, 1.0)
    else:
        flip = torch.ones_like(scale)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    aspect = height / width  # rotation is done in pixel space, expressed in normalised coords
    theta = torch.empty(n, 2, 3, device=device, dtype=torch.float32)
    # [x_in, y_in] = R S [flip * x_out, y_out] + t
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin * aspect
    theta[:, 0, 2] = tx
    theta[:, 1, 0] = sin / aspect * flip
    theta[:, 1, 1] = cos
    theta[:, 1, 2] = ty
    return theta


def _cutout(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Zero (= mean) one random square per sample; the square may run off the border."""
    n, _, h, w = x.shape
    u = torch.rand((n, 3), generator=generator, device=x.device, dtype=torch.float32)
    side = strength * MAX_CUTOUT * min(h, w) * (0.5 + 0.5 * u[:, 0])  # half to full size
    cy, cx = u[:, 1] * h, u[:, 2] * w
    ys = torch.arange(h, device=x.device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=x.device, dtype=torch.float32) + 0.5
    inside_y = (ys[None, :] - cy[:, None]).abs() < side[:, None] / 2  # n x h
    inside_x = (xs[None, :] - cx[:, None]).abs() < side[:, None] / 2  # n x w
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]  # n x 1 x h x w
    return x.masked_fill(mask, 0.0)


def _colour(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample contrast (around the sample's mean) and brightness jitter."""
    n = x.shape[0]
    u = _uniform((n, 2), generator, x.device)
    brightness = (u[:, 0] * (strength * MAX_COLOUR)).view(n, 1, 1, 1).to(x.dtype)
    contrast = (1.0 + u[:, 1] * (strength * MAX_COLOUR)).view(n, 1, 1, 1).to(x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean + brightness


def augment_batch(x: torch.Tensor, strength: float, generator: torch.Generator, *, hflip: bool) -> torch.Tensor:
    """Randomly augment every sample of ``x`` (normalised N x C x H x W) independently.

    ``strength`` in [0, 1] scales every transform: 0 returns ``x`` itself (no copy, no random
    numbers drawn). ``hflip`` says whether mirroring preserves the label. All randomness comes
    from ``generator``, which must live on ``x.device``.
    """
    _check(x, strength, generator)
    if strength == 0.0:
        return x
    n, _, h, w = x.shape
    theta = _affine_matrices(n, strength, generator, hflip, x.device, h, w).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = _cutout(out, strength, generator)
    return _colour(out, strength, generator)


def strong_augment(x: torch.Tensor, generator: torch.Generator, *, hflip: bool) -> torch.Tensor:
    """The "strong" view for consistency methods (UDA-style): full strength plus a second cutout."""
    return _cutout(augment_batch(x, 1.0, generator, hflip=hflip), 1.0, generator)
