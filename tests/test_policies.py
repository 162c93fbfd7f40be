"""Augmentation policies by name: the standard crop-and-flip's distribution (offsets uniform over
the padding, flip rate one half), black padding, seeding, composition, and the recipe field."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from audit.engine.datasets import dataset_info
from audit.engine.policies import (
    crop_padding,
    get_policy,
    policy_names,
    random_crop_flip,
)
from audit.engine.train import Recipe
from audit.errors import AuditError

CIFAR = dataset_info("cifar10")
DIGITS = dataset_info("digits")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ids(n: int, h: int = 32, w: int = 32) -> torch.Tensor:
    """Every pixel holds 1 + its index, every sample the same image: an output pixel names its source."""
    return (torch.arange(h * w, dtype=torch.float32) + 1).view(1, 1, h, w).expand(n, 1, h, w).contiguous()


def _offsets_and_flips(out: torch.Tensor, pad: int, w: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row offset, column offset, mirrored) of each sample of a crop of ``_ids``: the output pixel at
    (pad, pad) - or (pad, w-1-pad) when mirrored - is the source pixel (oy, ox)."""
    mirrored = out[:, 0, pad, pad + 1] < out[:, 0, pad, pad]
    col = torch.where(mirrored, torch.full_like(mirrored, w - 1 - pad, dtype=torch.long), torch.full_like(mirrored, pad, dtype=torch.long))
    ident = out[torch.arange(len(out)), 0, pad, col].long() - 1
    return ident // w, ident % w, mirrored


def test_crop_offsets_are_uniform_over_the_padding_and_flips_half():
    n, pad = 30_000, 4
    out = random_crop_flip(_ids(n), _gen(0), padding=pad, fill=torch.zeros(1), hflip=True)
    oy, ox, mirrored = _offsets_and_flips(out, pad)
    assert oy.min() == 0 and oy.max() == 2 * pad and ox.min() == 0 and ox.max() == 2 * pad
    cells = torch.bincount(oy * (2 * pad + 1) + ox, minlength=(2 * pad + 1) ** 2)
    assert stats.chisquare(cells.numpy()).pvalue > 1e-3  # 81 equally likely offsets
    rate = mirrored.float().mean().item()
    assert abs(rate - 0.5) < 4 * (0.25 / n) ** 0.5
    # Mirroring is independent of the offset: the flip rate is one half within each column offset too.
    table = torch.stack([torch.bincount(ox[mirrored == b], minlength=2 * pad + 1) for b in (False, True)])
    assert stats.chi2_contingency(table.numpy()).pvalue > 1e-3


def test_a_crop_is_the_padded_image_shifted_exactly():
    x = torch.randn(64, 3, 32, 32, generator=_gen(1))
    g = _gen(2)
    out = random_crop_flip(x, g, padding=4, fill=torch.tensor([7.0, 8.0, 9.0]), hflip=True)
    g = _gen(2)  # the same draws, replayed: offsets first, then the flip bits
    offsets = torch.randint(0, 9, (64, 2), generator=g)
    flips = torch.rand(64, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for c, v in enumerate((7.0, 8.0, 9.0)):
        border = torch.ones(40, 40, dtype=torch.bool)
        border[4:36, 4:36] = False
        padded[:, c][:, border] = v
    for i in range(64):
        oy, ox = offsets[i].tolist()
        crop = padded[i, :, oy:oy + 32, ox:ox + 32]
        assert torch.equal(out[i], crop.flip(-1) if flips[i] else crop)


def test_no_flip_where_the_data_set_forbids_it_and_the_offsets_stay_the_same():
    n, pad = 2_000, 1
    with_flip = random_crop_flip(_ids(n, 8, 8), _gen(5), padding=pad, fill=torch.zeros(1), hflip=True)
    without = random_crop_flip(_ids(n, 8, 8), _gen(5), padding=pad, fill=torch.zeros(1), hflip=False)
    oy1, ox1, m1 = _offsets_and_flips(with_flip, pad, 8)
    oy2, ox2, m2 = _offsets_and_flips(without, pad, 8)
    assert m1.any() and not m2.any()
    assert torch.equal(oy1, oy2) and torch.equal(ox1, ox2)


def test_standard_pads_with_black_and_keeps_shape_layout_and_device():
    x = torch.zeros(256, 3, 32, 32)  # the data set's mean colour everywhere
    out = get_policy("standard")(x, _gen(0), CIFAR)
    black = torch.tensor([-m / s for m, s in zip(CIFAR.mean, CIFAR.std)]).view(1, 3, 1, 1)
    is_black = torch.isclose(out, black.expand_as(out)).all(1)
    assert ((out == 0).all(1) | is_black).all()
    assert is_black.any() and not is_black.all()
    cl = x.contiguous(memory_format=torch.channels_last)
    out_cl = get_policy("standard")(cl, _gen(0), CIFAR)
    assert out_cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(out_cl, out)
    assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize("side,pad", [(32, 4), (28, 4), (8, 1), (64, 8)])
def test_crop_padding_is_the_papers_at_32(side, pad):
    assert crop_padding(side, side) == pad


@pytest.mark.parametrize("name", ["standard", "autoaugment-cifar10", "strength", "standard+strength"])
def test_same_seed_same_batch_and_the_global_rng_is_not_touched(name):
    x = torch.randn(32, 3, 32, 32, generator=_gen(0))
    policy = get_policy(name)
    torch.manual_seed(0)
    a = policy(x, _gen(3), CIFAR, 0.5)
    state = torch.random.get_rng_state()
    torch.manual_seed(99)
    b = policy(x, _gen(3), CIFAR, 0.5)
    c = policy(x, _gen(4), CIFAR, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    policy(x, _gen(3), CIFAR, 0.5)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_composition_applies_the_steps_in_order_from_one_generator():
    x = torch.randn(16, 3, 32, 32, generator=_gen(0))
    g = _gen(7)
    by_hand = get_policy("strength")(get_policy("standard")(x, g, CIFAR), g, CIFAR, 0.4)
    assert torch.equal(get_policy("standard+strength")(x, _gen(7), CIFAR, 0.4), by_hand)


def test_strength_policy_at_zero_is_the_identity_and_draws_nothing():
    x = torch.randn(8, 1, 8, 8, generator=_gen(0))
    g = _gen(1)
    state = g.get_state()
    policy = get_policy("strength")
    assert not policy.is_random(0.0) and policy.is_random(0.1)
    assert torch.equal(policy(x, g, DIGITS, 0.0), x) and torch.equal(g.get_state(), state)
    assert get_policy("standard+strength").is_random(0.0)


def test_grey_small_images_work():
    x = torch.randn(8, 1, 8, 8, generator=_gen(0))
    for name in policy_names():
        out = get_policy(name)(x, _gen(1), DIGITS, 0.5)
        assert out.shape == x.shape and torch.isfinite(out).all() and not torch.equal(out, x)


def test_unknown_or_repeated_steps_are_refused_with_the_allowed_ones():
    with pytest.raises(AuditError, match="unknown augmentation policy 'crop'; allowed: .*standard"):
        get_policy("standard+crop")
    with pytest.raises(AuditError, match="names a step twice"):
        get_policy("standard+standard")
    with pytest.raises(AuditError, match="unknown augmentation policy"):
        Recipe(augment="randaugment")


def test_the_recipe_names_its_policy_and_the_default_keeps_old_hashes():
    assert Recipe().augment == "strength" and "augment" not in Recipe().to_dict()
    assert Recipe(augment=" standard + strength").augment == "standard+strength"
    assert Recipe(augment="standard").to_dict()["augment"] == "standard"


def test_training_uses_the_recipes_policy_and_stays_a_function_of_the_seed(digits):
    from audit.engine.train import train_student

    def run(augment: str, seed: int = 1):
        recipe = Recipe(epochs=1, batch_size=64, lr=0.1, augment=augment)
        result, _ = train_student(method="nokd", config={"strength": 0.0}, splits=digits, student_arch="resnet8",
                                  teacher=None, recipe=recipe, seed=seed)
        return result.train_loss + result.val_acc

    standard = run("standard")
    assert run("standard") == standard  # same seed, same numbers
    assert run("strength") != standard  # strength 0: no augmentation at all
    assert run("standard", seed=2) != standard
