"""The method catalogue (``catalogue.toml``): every KD method's names, paper, family, defaults,
search space and options, torch-free.

It is the one source of method names and aliases: ``methods.register_method`` gives each method
class its card, the claims registry maps a paper's spelling through ``lookup``, and the report
reads names and spaces from here without loading torch or any model code.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from audit.errors import AuditError, unknown

BASELINE = "nokd"  # the student trained alone: the reference every KD claim is a gain over
CLASSICAL = "kd"  # Hinton et al.'s KD: the reference every newer method claims to beat
REFERENCES = (BASELINE, CLASSICAL)
MAIN_JOB_METHOD = "feature_kd"  # what the README's main job audits (`audit bench --main-job` times it)
FAMILIES = ("baseline", "logits", "features", "relations", "multi-teacher", "multi-stage")

# The dimensions every method shares where they apply. Ranges cover the values KD papers use
# (T from 1 to 10; the survey hard-coded T=5, alpha=0.5; CRD's benchmark T=4).
SHARED_SPACE: dict[str, BaseDistribution] = {
    "temperature": FloatDistribution(1.0, 10.0),
    "alpha": FloatDistribution(0.0, 1.0),
    "strength": FloatDistribution(0.0, 1.0),
}
OPTION_KINDS = ("architecture", "architectures", "policy")
PATH = Path(__file__).with_name("catalogue.toml")


@dataclass(frozen=True)
class Option:
    """A setting of one method that a study fixes (not searched), e.g. TAKD's assistant."""

    name: str
    kind: str  # one of OPTION_KINDS
    flag: str  # the `audit run` flag that sets it
    help: str
    teachers: bool = False  # architectures the engine trains once (cached) and hands over frozen


@dataclass(frozen=True)
class Card:
    """One method's declaration."""

    name: str
    aliases: tuple[str, ...]
    paper: str
    year: int
    family: str
    shared: tuple[str, ...]
    defaults: dict[str, float | int | str]
    space: dict[str, BaseDistribution]
    extra_cost: str = "none"
    notes: tuple[str, ...] = ()
    # How the loss is scaled against its authors' and the benchmarks' code (``audit methods`` shows
    # it): which of our values give their loss, so a preset can convert (studies/presets/).
    convention: str = ""
    needs_teacher: bool = True
    options: dict[str, Option] = field(default_factory=dict)

    def search_space(self) -> dict[str, BaseDistribution]:
        """The shared dimensions this method uses, then its own (the order Optuna samples them in)."""
        return {**{k: SHARED_SPACE[k] for k in self.shared}, **self.space}

    def default_config(self) -> dict[str, float | int | str]:
        """The paper's values of the searched dimensions."""
        return {k: self.defaults[k] for k in self.search_space()}

    def extra_teachers(self, options: dict) -> list[str]:
        """The architectures in ``options`` that the options marked as teachers name."""
        return [a for name, o in self.options.items() if o.teachers for a in options.get(name, [])]


def key(name: object) -> str:
    """A name compared ignoring case, spaces, '-', '_' and '/' ('+' is kept: 'DIST+' is not 'DIST')."""
    return re.sub(r"[\s\-_/]", "", str(name).lower())


def _distribution(method: str, name: str, d: dict) -> BaseDistribution:
    if "choices" in d:
        return CategoricalDistribution(tuple(d["choices"]))
    if d.get("int"):
        return IntDistribution(int(d["low"]), int(d["high"]), log=bool(d.get("log", False)))
    if {"low", "high"} <= set(d):
        return FloatDistribution(float(d["low"]), float(d["high"]), log=bool(d.get("log", False)), step=d.get("step"))
    raise AuditError(f"catalogue: {method}.space.{name} needs low and high, or choices")


def _card(name: str, d: dict) -> Card:
    options = {}
    for opt, o in d.get("options", {}).items():
        if o.get("kind") not in OPTION_KINDS:
            raise AuditError(f"catalogue: {name}.options.{opt} has kind {o.get('kind')!r}; allowed: {', '.join(OPTION_KINDS)}")
        options[opt] = Option(opt, o["kind"], o["flag"], o["help"], bool(o.get("teachers", False)))
    card = Card(
        name=name, aliases=tuple(d.get("aliases", ())), paper=d["paper"], year=int(d["year"]), family=d["family"],
        shared=tuple(d.get("shared", SHARED_SPACE)), defaults=dict(d.get("defaults", {})),
        space={k: _distribution(name, k, v) for k, v in d.get("space", {}).items()},
        extra_cost=d.get("extra_cost", "none"), notes=tuple(d.get("notes", ())), convention=d.get("convention", ""),
        needs_teacher=bool(d.get("needs_teacher", True)), options=options,
    )
    if card.family not in FAMILIES:
        raise AuditError(f"catalogue: {name} has family {card.family!r}; allowed: {', '.join(FAMILIES)}")
    missing = set(card.search_space()) - set(card.defaults)
    if missing:
        raise AuditError(f"catalogue: {name} has no paper default for {sorted(missing)}")
    return card


@cache
def cards() -> dict[str, Card]:
    """Every method's card, by canonical name (sorted)."""
    with open(PATH, "rb") as f:
        raw = tomllib.load(f)
    return {name: _card(name, raw[name]) for name in sorted(raw)}


@cache
def _by_key() -> dict[str, str]:
    table: dict[str, str] = {}
    for card in cards().values():
        for spelling in (card.name, *card.aliases):
            k = key(spelling)
            if table.get(k, card.name) != card.name:
                raise AuditError(f"catalogue: {spelling!r} names both {table[k]} and {card.name}")
            table[k] = card.name
    return table


def names() -> list[str]:
    return list(cards())


def lookup(name: object) -> str | None:
    """The canonical name a spelling means (``FitNet`` -> ``feature_kd``), or ``None``."""
    return _by_key().get(key(name))


def canonical_name(name: str) -> str:
    """Like ``lookup``, but an unknown name is an error naming every allowed one."""
    found = lookup(name)
    if found is None:
        raise unknown("method", name, [s for c in cards().values() for s in (c.name, *c.aliases)])
    return found


def card(name: str) -> Card:
    return cards()[canonical_name(name)]


def option_flags() -> dict[str, tuple[str, Option]]:
    """Every method option that has an `audit run` flag: flag -> (method, option)."""
    return {o.flag: (c.name, o) for c in cards().values() for o in c.options.values()}
