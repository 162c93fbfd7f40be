"""A study: everything that fixes what an audit computes, resolved, stored as ``study.toml`` and hashed.

The budget part (data set, split, architectures, trials, seeds, recipe, the methods' own
options) is what must be equal for methods to be compared; its hash is stored with every study.
A method's own options (``[options.<method>]`` in a study file) are resolved by the method and
passed through the engine unopened.
"""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import tomli_w

from audit.engine.datasets import dataset_names
from audit.engine.models import model_names
from audit.engine.train import Accel, Recipe
from audit.errors import AuditError, unknown
from audit.search.storage import redact
from methods import canonical_name, get_method
from methods.catalogue import REFERENCES, cards

BACKENDS = ("ray", "local")
# The default audit (README, "The default audit"): a short budget, so the student is a few points
# below its teacher and distillation has room, and the whole audit fits a 2-core laptop in minutes.
DEFAULT_RECIPE = Recipe(epochs=3, batch_size=64, lr=0.1)
DEFAULT_SEEDS = 10  # confirmation seeds: the power to decide a 1-point gain (README, "The default audit")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Study:
    name: str
    methods: list[str]
    dataset: str = "digits"
    teacher: str = "resnet20"
    student: str = "resnet8"
    trials: int = 50
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

    def __post_init__(self) -> None:
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
        """What must be equal across compared methods."""
        return {
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
    def read(cls, path: Path) -> "Study":
        try:
            d = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise AuditError(f"cannot read study file {str(path)!r}: {exc}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict) -> "Study":
        d = dict(d)
        d.pop("budget_hash", None)
        _move_legacy_options(d)
        allowed = {f.name for f in fields(cls)}
        extra = set(d) - allowed
        if extra:
            raise AuditError(f"unknown study keys {sorted(extra)}; allowed: {', '.join(sorted(allowed))}")
        if "recipe" in d:
            r = dict(d["recipe"])
            if "milestones" in r:
                r["milestones"] = tuple(r["milestones"])
            try:
                d["recipe"] = Recipe(**r)
            except TypeError as exc:
                raise AuditError(f"bad [recipe] in study: {exc}") from None
        if "accel" in d:
            d["accel"] = Accel.from_dict(dict(d["accel"]))
        return cls(**d)


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
