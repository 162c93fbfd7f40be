"""A published claim of the registry judged on a study's confirmation runs.

A claim's selection rule has two parts: which epoch of each run counts (the last, or the best on
the test set) and which statistic of how many runs was published (one run, the mean, median or
best of k). ``selection_of`` reads both from the registry's ``rule``, ``rule_basis`` and
``claimed_runs``. Where the source does not state the epoch (an assumed rule, and the across-run
rules, which say nothing about epochs) the claim is judged under both, and the verdict stands only
where both agree: each test's p-value is the larger of the two (an intersection-union test, valid
at alpha without adjustment), so a verdict that depends on the unstated rule comes out
INCONCLUSIVE and is flagged.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from audit.errors import AuditError
from audit.judge.claim import (
    CODE,
    DEFAULT_ALPHA,
    DEFAULT_MARGIN,
    Verdict,
    claim_from_registry,
    judge_claim,
)

EPOCH_RULES = ("last", "best")
_EPOCH_TEXT = {"last": "last epoch", "best": "best epoch on test"}
_STATISTIC_OF_RULE = {"mean_of_k": "mean", "median_of_k": "median", "best_of_k_seeds": "best"}


@dataclass(frozen=True)
class Selection:
    """How a claim was selected: the epoch rule(s) to judge it under, and its statistic of k runs."""

    epochs: tuple[str, ...]
    statistic: str
    k: int | None
    epoch_stated: bool

    def describe(self) -> str:
        k = f"{self.k}" if self.k else "k"
        runs = {"mean": f"mean of {k} runs" if self.k != 1 else "single run",
                "median": f"median of {k} runs", "best": f"best of {k} seeds"}[self.statistic]
        if self.k is None and self.statistic == "mean":
            runs = "runs not stated"
        if self.epoch_stated:
            return f"{_EPOCH_TEXT[self.epochs[0]]}, {runs}"
        return f"{runs}; epoch not stated: judged at the last and at the best epoch"


def statistic_of_rule(rule: str) -> str:
    """The statistic of k runs a registry rule names (a mean unless it says median or best of k)."""
    return _STATISTIC_OF_RULE.get(rule, "mean")


def selection_of(rule: str, rule_basis: str, claimed_runs: object) -> Selection:
    """The selection a registry row describes."""
    k = claim_from_registry(0.0, None, claimed_runs)[2]  # NaN / NA: not stated
    stated = str(rule_basis).startswith("stated") and rule in ("last_epoch", "best_epoch_test")
    if stated:
        return Selection(("last",) if rule == "last_epoch" else ("best",), "mean", k, True)
    return Selection(EPOCH_RULES, statistic_of_rule(rule), 1 if rule == "single_run" else k, False)


def per_run(curves: Sequence[Sequence[float]], epoch: str) -> list[float]:
    """Each run's test accuracy under an epoch rule: its last epoch or its best one."""
    if epoch not in EPOCH_RULES:
        raise AuditError(f"unknown epoch rule {epoch!r}; allowed: {', '.join(EPOCH_RULES)}")
    out = []
    for i, run in enumerate(curves):
        values = [float(v) for v in run]
        if not values or not all(math.isfinite(v) for v in values):
            raise AuditError(f"run {i} has no finite per-epoch test accuracy")
        out.append(values[-1] if epoch == "last" else max(values))
    return out


@dataclass(frozen=True)
class PublishedVerdict:
    """The verdicts of one claim, one per epoch rule it was judged under, and the one that stands."""

    selection: Selection
    by_epoch: dict[str, Verdict]
    verdict: str  # where the epoch rules disagree: INCONCLUSIVE
    p: float  # the p-value of the test behind ``verdict`` (the larger over the epoch rules)
    notes: tuple[str, ...]

    @property
    def differs(self) -> bool:
        return len({v.verdict for v in self.by_epoch.values()}) > 1

    @property
    def model(self) -> str:
        return next(iter(self.by_epoch.values())).model


def judge_published(claimed: object, curves: Sequence[Sequence[float]], selection: Selection, *,
                    claimed_std: object = None, noise: str = "shared",
                    others: Mapping[str, tuple[float, float]] | None = None,
                    margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA) -> PublishedVerdict:
    """Judge a registry claim on runs given as per-epoch test accuracies (``curves``), under each
    epoch rule of its ``selection``. ``others`` gives, per epoch rule, the study's other methods'
    (sum of squared deviations, df) to pool the seed spread with. A claimed std without its
    number of runs, and the Welch model for a claim without a std, fall back to what the claim
    allows, and ``notes`` say so."""
    value, std, k = claim_from_registry(claimed, claimed_std, selection.k)
    notes: list[str] = []
    if std is not None and (k is None or k < 2):
        notes.append(f"the claimed std {std:g} has no number of runs behind it; not used")
        std = None
    if noise == "welch" and (std is None or selection.statistic != "mean"):
        notes.append("the claim states no std of a mean: judged with the shared seed spread instead of Welch's")
        noise = "shared"
    by_epoch = {e: judge_claim(value, per_run(curves, e), claimed_std=std, claimed_runs=k,
                               statistic=selection.statistic, noise=noise,
                               others=(others or {}).get(e), margin=margin, alpha=alpha)
                for e in selection.epochs}
    p = {t: max(getattr(v, t) for v in by_epoch.values()) for t in ("p_equivalence", "p_shortfall", "p_excess")}
    code = 0
    if all(math.isfinite(x) for x in p.values()):
        code = 3 if p["p_excess"] < alpha else 2 if p["p_shortfall"] < alpha else 1 if p["p_equivalence"] < alpha else 0
    verdict = CODE[code]
    p_verdict = {"REPRODUCED": p["p_equivalence"], "NOT REPRODUCED": p["p_shortfall"],
                 "EXCEEDED": p["p_excess"]}.get(verdict, min(p.values()))
    return PublishedVerdict(selection, by_epoch, verdict, p_verdict, tuple(notes))
