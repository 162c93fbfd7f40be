"""Equal budgets: what every compared method must share, and the check that they did.

A study's budget (data set, split, architectures, trials, seeds, recipe, concurrency) is hashed
(``Study.budget_hash``) and the hash is stamped on every trial and run. Results whose hashes
differ are not compared unless the user says so, and then the output says it too. The default
audit's pair, trials and seeds live here, where the command line reads them without importing torch
(its recipe, a ``Recipe``, is ``audit.study.DEFAULT_RECIPE``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from audit.errors import AuditError

BUDGET_COLUMNS = ("epochs", "steps", "images", "flops", "wall_s")
# The default audit (README, "The default audit"): resnet8 at half width stays several points below
# resnet20 on digits after the default 4 epochs, so distillation has room; its seeds then spread by
# 0.6-1.0 points (the pilot: 0.6-1.3 at 10 seeds), and 30 confirmation seeds decide a 1-point gain with
# power 0.8 up to a spread of 1.3 (the main job measured 0.76: power 1.00).
DEFAULT_TEACHER = "resnet20"
DEFAULT_STUDENT = "resnet8_half"
DEFAULT_TRIALS = 50
DEFAULT_SEEDS = 30
SEED_MAX = 2**32 - 1  # every seed of a study (split, search, teacher, runs) is at most this: numpy's seeds stop there


def check_equal(records: list[dict], *, allow_unequal: bool = False) -> list[str]:
    """Refuse (AuditError) records made under different budgets, or return warnings when allowed.

    Also warns about a method whose runs used more training epochs than the others (a paper's
    own multi-stage protocol), which the comparison must state.
    """
    hashes = Counter(r.get("budget_hash") for r in records)
    warnings: list[str] = []
    if len(hashes) > 1:
        by_method: dict[str, set] = {}
        for r in records:
            by_method.setdefault(r["method"], set()).add(r.get("budget_hash"))
        detail = "; ".join(f"{m}: {', '.join(sorted(map(str, h)))}" for m, h in sorted(by_method.items()))
        message = f"results were made under {len(hashes)} different budgets ({detail})"
        if not allow_unequal:
            raise AuditError(f"{message}; refusing to compare them (pass --allow-unequal-budgets to compare anyway)")
        warnings.append(f"UNEQUAL BUDGETS: {message}; compared anyway, as asked")
    epochs: dict[str, int] = {}
    for r in records:
        if r.get("status") == "ok" and r.get("epochs"):
            epochs[r["method"]] = max(epochs.get(r["method"], 0), int(r["epochs"]))
    if epochs:
        least = min(epochs.values())
        for method, e in sorted(epochs.items()):
            if e > least:
                warnings.append(f"{method} trained for {e} epochs against {least} for others (paper protocol: more compute)")
    return warnings


# ---------------------------------------------------------------------------------------------
# the compute a study will take
# ---------------------------------------------------------------------------------------------

LIMIT_S = 7 * 24 * 3600.0  # a study estimated to run longer than a week on this hardware needs --force


@dataclass(frozen=True)
class Estimate:
    """The study's training work and how long this machine (or cluster) takes for it, from the
    measured cost of one training image of its pair (``audit.engine.cost``). A lower bound of the
    wall time: evaluation, start-up and scheduling come on top (README, "Reliability")."""

    images: int  # student training images: every method's search trials and confirmation runs
    teacher_images: int  # images to train the teachers not in the cache yet
    per_image_s: float  # measured, one trial's threads and device
    teacher_per_image_s: float
    concurrency: int  # trials at once

    @property
    def seconds(self) -> float:
        return (self.images * self.per_image_s) / self.concurrency + self.teacher_images * self.teacher_per_image_s

    def line(self) -> str:
        teacher = f" + {self.teacher_images:,} to train the teacher" if self.teacher_images else ""
        return (f"compute estimate: {self.images:,} training images{teacher}, at {1 / self.per_image_s:,.0f} images/s "
                f"measured for one trial, {self.concurrency} at once: training alone about {duration(self.seconds)}")


def estimate(*, methods: int, trials: int, seeds: int, epochs: int, train_images: int, per_image_s: float,
             concurrency: int, teacher_images: int = 0, teacher_per_image_s: float = 0.0) -> Estimate:
    """Every method's ``trials`` search trials and ``seeds`` confirmation runs of ``epochs`` epochs
    over the training split (methods with extra stages fit inside that budget; a paper protocol
    adds to it, which is not counted here)."""
    images = methods * (trials + seeds) * epochs * train_images
    return Estimate(images, teacher_images, per_image_s, teacher_per_image_s, max(1, concurrency))


def check_limit(est: Estimate, *, force: bool, limit_s: float = LIMIT_S) -> None:
    """Refuse a study beyond what a user can mean, unless forced."""
    if est.seconds > limit_s and not force:
        raise AuditError(f"this study's training alone would take about {duration(est.seconds)} on this hardware ({est.images:,} training "
                         f"images at {1 / est.per_image_s:,.0f} images/s, {est.concurrency} at once), more than the "
                         f"{duration(limit_s)} limit: lower --trials, --seeds or --epochs, or pass --force to run it anyway")


def duration(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit == "min" and seconds >= size):
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} s"
