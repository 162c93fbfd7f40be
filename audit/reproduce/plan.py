"""A reproduction: the claims' as-published protocols and how they run, stored as the study
folder's ``study.toml`` (``kind = "reproduce"``), and its plan: the runs and the compute they need.

Compute is counted, not guessed: epochs x training images x the FLOPs per image of the method on
the pair, measured with torch's flop counter on one real training step of each stage
(``audit.engine.flops``), for every seed, plus the teachers trained here. GPU-hours are those
FLOPs at a throughput the user states (``--throughput``, sustained TFLOP/s): a planning figure,
not a measurement of any GPU.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from audit.errors import AuditError
from audit.reproduce.protocol import Protocol
from methods.catalogue import REFERENCES, cards

if TYPE_CHECKING:
    from audit.engine.flops import FlopsCache
    from audit.study import Study

KIND = "reproduce"
# A round planning figure for GPU-hours (TFLOP/s sustained by a training step), not a measurement:
# `--throughput` states the user's own; `audit bench --device cuda` measures images per second.
DEFAULT_THROUGHPUT_TFLOPS = 10.0
AUDIT_TRIALS = 20  # the equal-budget arm's search trials per method unless --trials says otherwise
# Training images of the official splits, for plans made without the data (``--dry-run``).
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "mnist": 60_000, "fashion-mnist": 60_000}
# The equal-budget arm gives every trial the papers' crop and flip, the searched strength on top.
AUDIT_AUGMENT = "standard+strength"


@dataclass
class Reproduction:
    """What ``audit reproduce`` runs: one as-published arm per claim, and (``with_audit``) one
    equal-budget study per data set and pair. The run settings are ``Study``'s (the backends
    read them from either)."""

    name: str
    protocols: list[Protocol]
    with_audit: bool = False
    trials: int = AUDIT_TRIALS
    backend: str = "ray"
    storage: str | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 1
    teacher_weights: str | None = None
    teacher_sha256: str | None = None
    throughput_tflops: float = DEFAULT_THROUGHPUT_TFLOPS
    kind: str = KIND
    accel: object = field(default=None, repr=False)  # audit.engine.train.Accel, set by the command

    def __post_init__(self) -> None:
        if not self.protocols:
            raise AuditError("give at least one claim id (see `audit claims`)")
        if self.backend not in ("ray", "local"):
            raise AuditError(f"unknown backend {self.backend!r}; allowed: local, ray")
        if not self.throughput_tflops > 0:
            raise AuditError(f"--throughput must be a positive number of TFLOP/s, got {self.throughput_tflops}")

    @property
    def claims(self) -> list[str]:
        return [p.claim_id for p in self.protocols]

    def to_dict(self) -> dict:
        skip = {"protocols", "accel"}
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip and getattr(self, f.name) is not None}
        if self.storage is not None:  # the password is never written down (docs/cluster.md)
            from audit.search.storage import redact

            d["storage"] = redact(self.storage)
        d["claims"] = self.claims
        d["protocols"] = [p.to_dict() for p in self.protocols]
        if self.accel is not None:
            d["accel"] = asdict(self.accel)
        return d

    def write(self, path: Path) -> None:
        path.write_text(tomli_w.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict) -> "Reproduction":
        known = {f.name for f in fields(cls)} - {"protocols", "accel"}
        return cls(protocols=[Protocol.from_dict(p) for p in d.get("protocols", [])],
                   **{k: v for k, v in d.items() if k in known})

    @classmethod
    def read(cls, path: Path) -> "Reproduction":
        return cls.from_dict(tomllib.loads(Path(path).read_text(encoding="utf-8")))

    def audit_studies(self) -> list[tuple["Study", list[str]]]:
        """The equal-budget arm: one study per data set, pair and recipe, with the claims' methods
        (``nokd`` and ``kd`` are every study's references), the claims' recipe with the search's
        strength on top of the papers' augmentation, and as many confirmation seeds as the
        as-published arm runs."""
        from audit.engine.train import Recipe
        from audit.study import Study

        groups: dict[str, list[Protocol]] = {}
        for p in self.protocols:
            key = json.dumps([p.dataset, p.teacher, p.student, p.recipe], sort_keys=True)
            groups.setdefault(key, []).append(p)
        out = []
        for i, (key, ps) in enumerate(groups.items()):
            first = ps[0]
            options = {p.method: p.options for p in ps if p.options and p.method not in REFERENCES}
            suffix = f"-{i + 1}" if len(groups) > 1 and sum(g[0].pair == first.pair for g in groups.values()) > 1 else ""
            study = Study(
                name=f"audit-{first.dataset}-{first.teacher}-{first.student}{suffix}", methods=[p.method for p in ps],
                dataset=first.dataset, teacher=first.teacher, student=first.student, trials=self.trials,
                seeds=list(range(1, max(len(p.seeds) for p in ps) + 1)), recipe=Recipe.from_dict({**first.recipe, "augment": AUDIT_AUGMENT}), options=options,
                backend=self.backend, storage=self.storage, address=self.address, cpus_per_trial=self.cpus_per_trial,
                gpus_per_trial=self.gpus_per_trial, max_concurrent=self.max_concurrent, max_failures=self.max_failures,
                teacher_weights=self.teacher_weights, teacher_sha256=self.teacher_sha256,
                **({"accel": self.accel} if self.accel is not None else {}),
            )
            out.append((study, [p.claim_id for p in ps]))
        return out


def protocol_hash(p: Protocol) -> str:
    """What fixes a run of a claim's arm: the budget hash its records carry (the claim id is part
    of it, so two claims of one protocol keep their runs apart)."""
    keys = ("claim_id", "method", "dataset", "teacher", "student", "recipe", "teacher_recipe", "normalize", "config",
            "options", "paper_protocol")
    return hashlib.sha256(json.dumps({k: getattr(p, k) for k in keys}, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# the plan: runs and compute
# ---------------------------------------------------------------------------------------------


@dataclass
class ClaimCompute:
    claim_id: str
    stages: list[tuple[str, int, float]]  # (stage, epochs, FLOPs per image) of one run
    train_images: int
    runs: int
    student_flops: float  # every run of the arm
    teacher_flops: float  # the teachers this claim trains here (0 when released or shared and counted before)

    @property
    def total(self) -> float:
        return self.student_flops + self.teacher_flops


def plan_compute(rep: Reproduction, cache: FlopsCache, train_images: Callable[[str], int],
                 on_claim: Callable[[Protocol, ClaimCompute], None] | None = None) -> list[ClaimCompute]:
    """The compute of every claim's arm; a teacher several claims share is counted once."""
    from audit.engine.datasets import dataset_info

    seen_teachers: set[str] = set()
    out = []
    for p in rep.protocols:
        info = dataset_info(p.dataset)
        n = train_images(p.dataset)
        batch = int(p.recipe["batch_size"])
        stages = cache.get(method=p.method, config=p.config, options=p.options, teacher=p.teacher, student=p.student,
                           info=info, batch_size=batch, epochs=int(p.recipe["epochs"]), paper_protocol=p.paper_protocol,
                           num_train=n)
        per_run = sum(s.epochs * s.flops_per_image for s in stages) * n
        teacher_flops = 0.0
        card = cards()[p.method]
        if card.needs_teacher:
            archs = ([] if rep.teacher_weights else [p.teacher]) + card.extra_teachers(p.options)
            for arch in archs:
                key = json.dumps([p.dataset, arch, p.teacher_recipe, p.normalize], sort_keys=True)
                if key in seen_teachers:
                    continue
                seen_teachers.add(key)
                t = cache.get(method=REFERENCES[0], config={}, options={}, teacher=None, student=arch, info=info,
                              batch_size=int(p.teacher_recipe["batch_size"]), epochs=int(p.teacher_recipe["epochs"]),
                              paper_protocol=False, num_train=n)
                teacher_flops += sum(s.epochs * s.flops_per_image for s in t) * n
        c = ClaimCompute(p.claim_id, [(s.stage, s.epochs, s.flops_per_image) for s in stages], n, len(p.seeds),
                         per_run * len(p.seeds), teacher_flops)
        out.append(c)
        if on_claim is not None:
            on_claim(p, c)
    return out


def gpu_hours(flops: float, tflops: float) -> float:
    return flops / (tflops * 1e12) / 3600.0
