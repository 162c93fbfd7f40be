"""Registry of KD methods: ``@register_method`` on a ``Method`` subclass, looked up by name or alias."""
from __future__ import annotations

import importlib
import pkgutil

from audit.errors import unknown
from methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}
_ALIASES: dict[str, str] = {}


def register_method(cls: type[Method]) -> type[Method]:
    for key in (cls.name, *cls.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"method name {key!r} registered twice")
    _REGISTRY[cls.name] = cls
    for alias in cls.aliases:
        _ALIASES[alias] = cls.name
    missing = set(cls.search_space()) - set(cls.defaults)
    if missing:
        raise ValueError(f"method {cls.name}: no paper default for {sorted(missing)}")
    return cls


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


def method_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def canonical_name(name: str) -> str:
    _load_all()
    key = name.lower()
    if key in _REGISTRY:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    raise unknown("method", name, [*_REGISTRY, *_ALIASES])


def get_method(name: str) -> type[Method]:
    return _REGISTRY[canonical_name(name)]
