"""Augmentation on the CPU: our batched policies against kornia and against torchvision's
per-image transforms, on CIFAR-shaped batches (normalised, N x 3 x 32 x 32, float32).

Cases (median milliseconds per batch over ``--repeats`` timed calls, after warm-up):

- crop+flip: ``audit.engine.policies.random_crop_flip`` (one gather, our generator) against
  kornia's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` drawing from torch's global
  RNG, and the same kornia modules driven by explicit per-sample parameters drawn from our
  generator (the only way to make kornia seeded per run);
- AutoAugment CIFAR-10: ``audit.engine.autoaugment.autoaugment_cifar10`` (a sub-policy per
  sample) against kornia's ``AutoAugment("cifar10")`` (one sub-policy per batch, global RNG; not
  the same augmentation, timed for scale) and torchvision's ``AutoAugment(CIFAR10)`` applied
  image by image to uint8 tensors (a sub-policy per image, as a DataLoader pipeline does it);
- strength 0.5: the engine's own affine/cutout/colour augmentation, for scale.

kornia is optional: without it those rows say so (``pip install kornia`` to time them). Not a
test: numbers depend on the machine and on what else runs on it.

    python benchmarks/augment_policies.py [--batch 128] [--repeats 30] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from audit.engine.autoaugment import autoaugment_cifar10, from_pixels, to_pixels
from audit.engine.datasets import dataset_info
from audit.engine.policies import get_policy, random_crop_flip

INFO = dataset_info("cifar10")


def timed(cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per call of each case, the cases interleaved so that a busy machine
    slows them alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: 1000 * statistics.median(ts) for name, ts in times.items()}


def kornia_cases(x: torch.Tensor, g: torch.Generator) -> dict[str, Callable[[], object]]:
    import kornia.augmentation as K
    from kornia.augmentation.auto import AutoAugment

    n = x.shape[0]
    crop, flip = K.RandomCrop((32, 32), padding=4), K.RandomHorizontalFlip()
    template = crop.forward_parameters(x.shape)
    flip_template = flip.forward_parameters(x.shape)
    corners = torch.tensor([[0, 0], [31, 0], [31, 31], [0, 31]], dtype=torch.float32)

    def seeded() -> torch.Tensor:
        # Per-sample offsets and flips from our generator, handed to kornia as its parameters.
        offsets = torch.randint(0, 9, (n, 2), generator=g).float()
        mirrored = torch.rand(n, generator=g) < 0.5
        params = dict(template, src=corners[None] + offsets[:, None, [1, 0]])
        return flip(crop(x, params=params), params=dict(flip_template, batch_prob=mirrored))

    auto = AutoAugment("cifar10")
    pixels01 = (to_pixels(x, INFO.mean, INFO.std) / 255.0)
    return {
        "crop+flip kornia (global RNG)": lambda: flip(crop(x)),
        "crop+flip kornia (our parameters)": seeded,
        "autoaugment kornia (per batch, global RNG)": lambda: auto(pixels01),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    pixels = to_pixels(x, INFO.mean, INFO.std).to(torch.uint8)
    black = torch.tensor([-m / s for m, s in zip(INFO.mean, INFO.std)])
    strength = get_policy("strength")

    from torchvision.transforms import v2

    tv_auto = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    cases: dict[str, Callable[[], object]] = {
        "crop+flip ours": lambda: random_crop_flip(x, g, padding=4, fill=black, hflip=True),
        "autoaugment ours (per sample)": lambda: autoaugment_cifar10(x, g, mean=INFO.mean, std=INFO.std),
        "autoaugment torchvision (image by image)": lambda: from_pixels(
            torch.stack([tv_auto(img) for img in pixels]).float(), INFO.mean, INFO.std),
        "strength 0.5 ours": lambda: strength(x, g, INFO, 0.5),
    }
    notes = {}
    try:
        cases.update(kornia_cases(x, g))
        import kornia

        version = kornia.__version__
    except ImportError as exc:
        notes["kornia"] = f"not installed ({exc.name}); pip install kornia"
        version = "-"
    print(f"batch {args.batch} x 3 x 32 x 32, {args.threads} thread(s), torch {torch.__version__}, kornia {version}; "
          f"median of {args.repeats}")
    for name, ms in sorted(timed(cases, args.repeats).items()):
        print(f"{name:<45} {ms:8.2f} ms/batch  {args.batch / ms * 1000:10.0f} img/s")
    for name, note in notes.items():
        print(f"{name:<45} {note}")

if __name__ == "__main__":
    main()
