"""A study: everything that fixes what an audit computes, resolved, stored as ``study.toml`` and hashed.

The budget part (data set, split, architectures, trials, seeds, recipe, the methods' own
options) is what must be equal for methods to be compared; its hash is stored with every study.
The statistics settings (the verdicts' equivalence margin and level) are fixed here too, before
any run, so that a report made with other values can say so; they are not part of the budget.
A method's own options (``[options.<method>]`` in a study file) are resolved by the method and
passed through the engine unopened.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import tomli_w

from audit.budget import (
    DEFAULT_SEEDS,
    DEFAULT_STUDENT,
    DEFAULT_TEACHER,
    DEFAULT_TRIALS,
    SEED_MAX,
)
from audit.engine.datasets import dataset_names
from audit.engine.models import model_names
from audit.engine.train import SCHEDULES, Accel, Recipe
from audit.errors import AuditError, unknown
from audit.judge.checks import check_level, check_margin
from audit.judge.claim import DEFAULT_ALPHA, DEFAULT_MARGIN
from audit.search.storage import redact
from methods import canonical_name, get_method
from methods.catalogue import REFERENCES, cards

BACKENDS = ("ray", "local")
# The default audit (README, "The default audit"): a short budget, with DEFAULT_STUDENT, keeps the
# student several points below its teacher and fits the whole audit on a 2-core laptop in minutes.
DEFAULT_RECIPE = Recipe(epochs=4, batch_size=64, lr=0.1)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Study:
    name: str
    methods: list[str]
    dataset: str = "digits"
    teacher: str = DEFAULT_TEACHER
    student: str = DEFAULT_STUDENT
    trials: int = DEFAULT_TRIALS
    seeds: list[int] = field(default_factory=lambda: list(range(1, DEFAULT_SEEDS + 1)))
    search_seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.2
    teacher_seed: int = 0
    options: dict[str, dict] = field(default_factory=dict)  # each method's own options, by method
    paper_protocol: bool = False
    recipe: Recipe = DEFAULT_RECIPE
    backend: str = "ray"
    storage: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 1  # Tune retries of a crashed trial (lost worker or node); NaN/OOM are not retried
    address: str | None = None
    stale_after_min: float = 30.0  # another driver's trial silent this long is taken as dead (shared storage)
    accel: Accel = Accel()  # speed settings: not part of the budget, recorded with every run
    margin: float = DEFAULT_MARGIN  # pre-registered equivalence margin of the claim verdicts (points)
    alpha: float = DEFAULT_ALPHA  # pre-registered level of each test
    # A released teacher (a teacher-cache entry, audit.engine.teacher_import) used instead of
    # training one; its weights' sha256 is part of the budget: another teacher, another budget.
    teacher_weights: str | None = None
    teacher_sha256: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):  # types and ranges first: a wrong one is named, never a traceback
            if f.name in _KEYS:
                _check(f.name, getattr(self, f.name))
        _check_table("recipe", self.recipe.to_dict(), _RECIPE)
        _check_table("accel", asdict(self.accel), _ACCEL)
        if not _NAME_RE.match(self.name):
            raise AuditError(f"study name {self.name!r} must be 1-100 letters, digits, '_', '-' or '.'")
        if not self.methods:
            raise AuditError("a study needs at least one --method")
        self.methods = list(dict.fromkeys(canonical_name(m) for m in self.methods))
        if self.dataset not in dataset_names():
            raise unknown("data set", self.dataset, dataset_names())
        for role in ("teacher", "student"):
            if getattr(self, role) not in model_names():
                raise unknown(f"{role} architecture", getattr(self, role), model_names())
        for what in ("trials",):
            if getattr(self, what) < 1:
                raise AuditError(f"--{what} must be a positive integer, got {getattr(self, what)}")
        self.options = self._resolved_options()
        if not self.seeds:
            raise AuditError("--seeds must be a positive integer")
        if len(set(self.seeds)) != len(self.seeds):
            raise AuditError(f"confirmation seeds must be distinct, got {self.seeds}")
        if self.backend not in BACKENDS:
            raise unknown("backend", self.backend, BACKENDS)
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise AuditError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if self.max_failures < 0:
            raise AuditError(f"--max-failures must be >= 0, got {self.max_failures}")
        if not self.stale_after_min > 0:
            raise AuditError(f"--stale-after must be a positive number of minutes, got {self.stale_after_min}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise AuditError(f"--max-concurrent must be a positive integer, got {self.max_concurrent}")
        check_margin(self.margin)
        check_level(self.alpha)

    def _resolved_options(self) -> dict[str, dict]:
        """Each method's options with its own defaults, for the methods of this study only."""
        if not isinstance(self.options, dict) or not all(isinstance(v, dict) for v in self.options.values()):
            raise AuditError("[options] must hold one table per method, e.g. [options.takd] with assistant = \"resnet14\"")
        given = {canonical_name(m): dict(v) for m, v in self.options.items()}
        stray = sorted(set(given) - set(self.all_methods))
        if stray:
            raise AuditError(f"options given for {', '.join(stray)}, which this study does not run; its methods: "
                             f"{', '.join(self.all_methods)}")
        resolved = {}
        for m in self.all_methods:
            opts = get_method(m).resolve_options(given.get(m, {}), teacher=self.teacher, student=self.student)
            if opts:
                resolved[m] = opts
        return resolved

    def extra_teachers(self) -> list[str]:
        """Architectures the study's methods ask the engine to train as further frozen teachers."""
        return list(dict.fromkeys(a for m in self.all_methods for a in get_method(m).extra_teachers(self.options.get(m, {}))))

    @property
    def all_methods(self) -> list[str]:
        """The methods searched and confirmed: the references first, then the audited ones."""
        return list(dict.fromkeys([*REFERENCES, *self.methods]))

    def budget(self) -> dict:
        """What must be equal across compared methods (a released teacher's sha256 only when there
        is one, so the hashes of studies that train their teacher are what they always were)."""
        budget = {
            "dataset": self.dataset,
            "split_seed": self.split_seed,
            "val_fraction": self.val_fraction,
            "teacher": self.teacher,
            "teacher_seed": self.teacher_seed,
            "student": self.student,
            "trials": self.trials,
            "seeds": list(self.seeds),
            "search_seed": self.search_seed,
            "recipe": self.recipe.to_dict(),
            "paper_protocol": self.paper_protocol,
            "options": self.options,
            "concurrency": self.max_concurrent,
        }
        if self.teacher_weights is not None:
            budget["teacher_sha256"] = self.teacher_sha256
        return budget

    def budget_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.budget(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["recipe"] = self.recipe.to_dict()
        if self.storage is not None:
            d["storage"] = redact(self.storage)
        d["budget_hash"] = self.budget_hash()
        return d

    def write(self, path: Path) -> None:
        path.write_text(tomli_w.dumps(self.to_dict()))

    @classmethod
    def read(cls, path: Path, name: str | None = None) -> "Study":
        """A study file; ``name`` (``--name``) stands for its own."""
        try:
            d = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise AuditError(f"cannot read study file {str(path)!r}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise AuditError(f"cannot read study file {str(path)!r}: it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        return cls.from_dict(d if name is None else {**d, "name": name})

    @classmethod
    def from_dict(cls, d: dict) -> "Study":
        d = dict(d)
        d.pop("budget_hash", None)
        for key, value in d.items():
            if key in _KEYS:
                _check(key, value)
        _move_legacy_options(d)
        allowed = {f.name for f in fields(cls)}
        extra = set(d) - allowed
        if extra:
            raise AuditError(f"unknown study keys {sorted(extra)}; allowed: {', '.join(sorted(allowed))}")
        missing = [k for k in ("name", "methods") if k not in d]
        if missing:
            raise AuditError(f"the study has no {' and no '.join(repr(k) for k in missing)}; a study file needs "
                             'name = "..." and methods = ["..."] (or give --name)')
        for table, rules in (("recipe", _RECIPE), ("accel", _ACCEL)):
            if table in d:
                if not isinstance(d[table], dict):
                    raise AuditError(f"study key {table!r} = {_show(d[table])}: must be a [{table}] table")
                if set(d[table]) - set(rules):
                    raise AuditError(f"unknown [{table}] keys {sorted(set(d[table]) - set(rules))}; allowed: {', '.join(rules)}")
                _check_table(table, d[table], rules)
        if "recipe" in d:
            try:
                d["recipe"] = Recipe.from_dict(dict(d["recipe"]))
            except TypeError as exc:
                raise AuditError(f"bad [recipe] in study: {exc}") from None
        if "accel" in d:
            d["accel"] = Accel.from_dict(dict(d["accel"]))
        return cls(**d)


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _seed(v: object) -> bool:
    return _int(v) and 0 <= v <= SEED_MAX


# What each key of a study (file or flags) may hold: a test, and what is allowed, as said in the error.
_KEYS = {
    "name": (lambda v: isinstance(v, str), "a name of 1-100 letters, digits, '_', '-' or '.'"),
    "methods": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(m, str) for m in v), "a non-empty list of method names"),
    "dataset": (lambda v: isinstance(v, str), "a data set name"),
    "teacher": (lambda v: isinstance(v, str), "an architecture name"),
    "student": (lambda v: isinstance(v, str), "an architecture name"),
    "trials": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "seeds": (lambda v: isinstance(v, list) and bool(v) and all(_seed(x) for x in v) and len(set(v)) == len(v),
              f"a non-empty list of distinct integers from 0 to {SEED_MAX}"),
    "search_seed": (_seed, f"an integer from 0 to {SEED_MAX}"),
    "split_seed": (_seed, f"an integer from 0 to {SEED_MAX}"),
    "teacher_seed": (_seed, f"an integer from 0 to {SEED_MAX}"),
    "val_fraction": (lambda v: _num(v) and 0 < v < 1, "a number between 0 and 1"),
    "options": (lambda v: isinstance(v, dict), "tables [options.<method>]"),
    "paper_protocol": (lambda v: isinstance(v, bool), "true or false"),
    "backend": (lambda v: isinstance(v, str), f"one of {', '.join(BACKENDS)}"),
    "storage": (lambda v: v is None or (isinstance(v, str) and bool(v)), "an Optuna storage URL"),
    "cpus_per_trial": (lambda v: _num(v) and v > 0, "a finite number > 0"),
    "gpus_per_trial": (lambda v: _num(v) and v >= 0, "a finite number >= 0"),
    "max_concurrent": (lambda v: v is None or (_int(v) and v >= 1), "an integer >= 1"),
    "max_failures": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "address": (lambda v: v is None or (isinstance(v, str) and bool(v)), "a Ray address (auto or host:port)"),
    "stale_after_min": (lambda v: _num(v) and v > 0, "a finite number of minutes > 0"),
}
_RECIPE = {
    "epochs": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _int(v) and v >= 2, "an integer >= 2"),
    "lr": (lambda v: _num(v) and v > 0, "a finite number > 0"),
    "momentum": (lambda v: _num(v) and 0 <= v < 1, "a number from 0 up to (not including) 1"),
    "nesterov": (lambda v: isinstance(v, bool), "true or false"),
    "weight_decay": (lambda v: _num(v) and v >= 0, "a finite number >= 0"),
    "schedule": (lambda v: v in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
    # Non-decreasing, and 0 allowed: a paper's int(fraction * epochs) milestones coincide at small
    # epoch counts (the seed survey's int(0.33 E) at E = 1), and the engine runs them as the source did.
    "milestones": (lambda v: isinstance(v, (list, tuple)) and all(_num(m) and 0 <= m < 1 for m in v)
                   and list(v) == sorted(v), "non-decreasing fractions of the epochs, each from 0 up to (not including) 1"),
    "gamma": (lambda v: _num(v) and 0 < v <= 1, "a number > 0 and <= 1"),
    "augment": (lambda v: isinstance(v, str) and bool(v), "an augmentation policy: steps joined by '+' (README, Augmentation)"),
}
_ACCEL = {
    **{k: (lambda v: isinstance(v, bool), "true or false") for k in ("channels_last", "bf16", "compile", "teacher_cache")},
    "teacher_cache_bytes": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
}


def _show(v: object) -> str:
    """A value as the study file writes it (true, "text", [1, 2])."""
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


def _check(key: str, value: object, rules: dict = _KEYS) -> None:
    test, allowed = rules[key]
    if not test(value):
        raise AuditError(f"study key {key!r} = {_show(value)}: must be {allowed}")


def _check_table(table: str, values: dict, rules: dict) -> None:
    for key, value in values.items():
        if key in rules:
            test, allowed = rules[key]
            if not test(value):
                raise AuditError(f"study key '{table}.{key}' = {_show(value)}: must be {allowed}")


def _move_legacy_options(d: dict) -> None:
    """Study files written before methods owned their options held them at the top level
    (``assistant = ...``, ``extra_teachers = [...]``): move each into its method's options table."""
    options = d.setdefault("options", {})
    for card in cards().values():
        for name in card.options:
            if name in d:
                value = d.pop(name)
                if value and card.name in {canonical_name(m) for m in d.get("methods", [])}:
                    options.setdefault(card.name, {}).setdefault(name, value)
    if not options:
        d.pop("options")
