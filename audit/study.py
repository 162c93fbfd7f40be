"""A study: everything that fixes what an audit computes, resolved, stored as ``study.toml`` and hashed.

The budget part (data set, split, architectures, trials, seeds, recipe) is what must be equal for
methods to be compared; its hash is stored with every study.
"""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import tomli_w

from audit.engine.data import dataset_names
from audit.errors import AuditError, unknown
from audit.engine.models import model_names
from audit.engine.train import Accel, Recipe
from methods import canonical_name

BACKENDS = ("ray", "local")
REFERENCES = ("nokd", "kd")
# Chosen so the whole default audit fits a 2-core laptop in minutes (see README for timings).
DEFAULT_RECIPE = Recipe(epochs=8, batch_size=64, lr=0.1)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Study:
    name: str
    methods: list[str]
    dataset: str = "digits"
    teacher: str = "resnet20"
    student: str = "resnet8"
    trials: int = 50
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    search_seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.2
    teacher_seed: int = 0
    assistant: str | None = None  # TAKD's assistant; chosen between teacher and student when not given
    extra_teachers: list[str] = field(default_factory=list)  # MKD's further teachers
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
        for arch in [*([self.assistant] if self.assistant else []), *self.extra_teachers]:
            if arch not in model_names():
                raise unknown("architecture", arch, model_names())
        if "takd" in self.methods and self.assistant is None:
            self.assistant = default_assistant(self.teacher, self.student)
        if "mkd" in self.methods and not self.extra_teachers:
            self.extra_teachers = ["wrn_16_2" if self.teacher != "wrn_16_2" else "resnet32"]
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
            "assistant": self.assistant,
            "extra_teachers": list(self.extra_teachers),
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


def default_assistant(teacher: str, student: str) -> str:
    """A CIFAR ResNet halfway in depth between a ResNet teacher and student (Mirzadeh et al. 2020)."""
    depths = {8: "resnet8", 14: "resnet14", 20: "resnet20", 26: "resnet26", 32: "resnet32", 44: "resnet44", 56: "resnet56", 110: "resnet110"}
    m_t, m_s = re.fullmatch(r"resnet(\d+)", teacher), re.fullmatch(r"resnet(\d+)", student)
    if not (m_t and m_s):
        raise AuditError(f"takd needs an assistant architecture between {teacher} and {student}: give --assistant (or assistant in the study file)")
    mid = (int(m_t.group(1)) + int(m_s.group(1))) / 2
    return depths[min(depths, key=lambda d: (abs(d - mid), d))]


def redact(url: str) -> str:
    """A storage URL without its password, for anything written or printed."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
