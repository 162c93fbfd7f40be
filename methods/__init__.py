"""KD methods: a torch-free catalogue (``catalogue.toml``, read by ``methods.catalogue``) and one
module per method, ``methods/<name>.py``, whose ``Method`` subclass registers itself with
``@register_method`` and takes its declaration (paper, defaults, search space) from its card.

Importing this package loads no torch: a method's module is imported when it is first asked for.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from methods.catalogue import canonical_name, card, names

if TYPE_CHECKING:
    from methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}
# The card's fields a method class carries as class attributes (``KD.paper``, ``KD.defaults``...).
_CARD_FIELDS = ("aliases", "paper", "year", "family", "shared", "defaults", "space", "extra_cost", "notes",
                "needs_teacher")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: ``cls.name`` must have a card in the catalogue and be registered once."""
    if cls.name in _REGISTRY:
        raise ValueError(f"method name {cls.name!r} registered twice")
    if cls.name not in names():
        raise ValueError(f"method {cls.name!r} has no card in methods/catalogue.toml")
    cls.card = card(cls.name)
    for f in _CARD_FIELDS:
        setattr(cls, f, getattr(cls.card, f))
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The method class for a name or alias, its module imported on first use."""
    canonical = canonical_name(name)
    if canonical not in _REGISTRY:
        importlib.import_module(f"{__name__}.{canonical}")
    if canonical not in _REGISTRY:
        raise ValueError(f"methods/{canonical}.py does not register a method named {canonical!r}")
    return _REGISTRY[canonical]


def method_names() -> list[str]:
    """Every method in the catalogue (each one's module is imported, so a missing one fails here)."""
    for name in names():
        get_method(name)
    return sorted(_REGISTRY)


__all__ = ["canonical_name", "get_method", "method_names", "register_method"]
