"""Architectures that return logits and their features.

Every model is built by ``build_model(name, in_channels=..., num_classes=...)`` and its forward
returns ``(logits, Features)`` so feature-based methods never patch a model.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from audit.errors import unknown


@dataclass
class Features:
    """What a model exposes to distillation methods.

    ``pre[i]``/``post[i]``: the output of the stem (i = 0) and of each stage (i >= 1) before and
    after its last activation (equal where the architecture has no activation there).
    ``pooled``: the embedding the classifier reads.
    """

    pre: list[torch.Tensor]
    post: list[torch.Tensor]
    pooled: torch.Tensor


class KDModel(nn.Module):
    """Base class: subclasses implement ``forward(x) -> (logits, Features)``."""

    def bn_before_relu(self) -> list[nn.Module]:
        """The batch-norm layer producing each ``pre`` feature from stage 1 on (OFD's margins).

        An entry is ``None`` where the stage output is not produced by a batch-norm layer.
        """
        raise NotImplementedError(f"{type(self).__name__} does not expose its stage batch-norms")


ModelFactory = Callable[[int, int], KDModel]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(*names: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory ``f(in_channels, num_classes) -> KDModel`` under one or more names."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        for name in names:
            if name in _REGISTRY:
                raise ValueError(f"model {name!r} registered twice")
            _REGISTRY[name] = factory
        return factory

    return wrap


def _load_all() -> None:
    # Importing the modules runs their @register_model decorators.
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def model_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def build_model(name: str, *, in_channels: int, num_classes: int) -> KDModel:
    _load_all()
    if name not in _REGISTRY:
        raise unknown("architecture", name, list(_REGISTRY))
    return _REGISTRY[name](in_channels, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
