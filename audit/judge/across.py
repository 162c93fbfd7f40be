"""Does a method's gain over a reference generalise across tasks (architecture pairs, data sets)?

Per task, two one-sided Welch tests of the gain (the method's mean minus the reference's):

* better: H0 gain <= 0 against H1 gain > 0;
* short: H0 gain >= m against H1 gain < m, with m the pre-registered margin: the gain is shown to
  be smaller than anything worth a claim.

Across tasks:

* ``GENERALISES``: better on every task. An intersection-union test: its p-value is the largest
  of the tasks' (valid at alpha without adjustment across tasks).
* ``NOT ON EVERY TASK``: short on at least one task. A union-intersection test: the smallest of
  the tasks' p-values times the number of tasks (Bonferroni).
* ``INCONCLUSIVE``: neither.

Both p-values of every (method, reference) join one family adjusted together by the caller
(Benjamini-Hochberg by default), as the report's other verdicts are.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

from audit.judge.aggregate import Pair

VERDICTS = ("GENERALISES", "NOT ON EVERY TASK", "INCONCLUSIVE")


@dataclass(frozen=True)
class TaskGain:
    gain: float
    p_better: float
    p_short: float
    n: int
    n_ref: int


@dataclass(frozen=True)
class Across:
    """A method against a reference on several tasks, before the family's adjustment."""

    tasks: dict[str, TaskGain]
    p_generalises: float  # largest p_better (1 when a task cannot be tested)
    p_short: float  # smallest p_short times the number of tasks, capped at 1
    missing: tuple[str, ...]  # tasks where the method or the reference has fewer than 2 runs

    def verdict(self, p_generalises_adj: float, p_short_adj: float, alpha: float) -> str:
        if p_generalises_adj < alpha:
            return "GENERALISES"
        if p_short_adj < alpha:
            return "NOT ON EVERY TASK"
        return "INCONCLUSIVE"


def _welch(a, b, alternative: str, shift: float = 0.0) -> float:
    # Runs without any spread on either side leave Welch's statistic undefined: nothing is shown.
    p = float(stats.ttest_ind_from_stats(a.mean() - shift, a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size,
                                         equal_var=False, alternative=alternative).pvalue)
    return p if math.isfinite(p) else 1.0


def judge_across(pairs: Mapping[str, Pair], *, margin: float) -> Across:
    """The per-task tests and the two cross-task p-values of one method against one reference."""
    tasks: dict[str, TaskGain] = {}
    missing = []
    for task, p in pairs.items():
        if p.runs.size < 2 or p.ref.size < 2:
            missing.append(task)
            gain = float(p.runs.mean() - p.ref.mean()) if p.runs.size and p.ref.size else math.nan
            tasks[task] = TaskGain(gain, math.nan, math.nan, int(p.runs.size), int(p.ref.size))
            continue
        tasks[task] = TaskGain(float(p.runs.mean() - p.ref.mean()), _welch(p.runs, p.ref, "greater"),
                               _welch(p.runs, p.ref, "less", shift=margin), int(p.runs.size), int(p.ref.size))
    tested = [t for t in tasks.values() if math.isfinite(t.p_better)]
    p_gen = 1.0 if missing or not tested else max(t.p_better for t in tested)
    p_short = min(1.0, min(t.p_short for t in tested) * len(pairs)) if tested else 1.0
    return Across(tasks, p_gen, p_short, tuple(missing))
