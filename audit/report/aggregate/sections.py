"""The sections of the aggregate report: one verdict per method across the tasks, aggregate
metrics (IQM and probability of improvement), performance profiles, the cross-architecture
matrix, and the study folders with their budgets."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from audit.judge.across import Across, judge_across
from audit.judge.aggregate import gain_iqm, improvement, profile
from audit.judge.multiple import adjust_pvalues
from audit.report import figures
from audit.report.aggregate import figures as agg_figures
from audit.report.aggregate.tasks import Task
from audit.report.document import Section, Table
from audit.report.format import fmt, fmt_p
from audit.report.settings import CORRECTIONS
from methods.catalogue import BASELINE, CLASSICAL, REFERENCES


@dataclass
class Options:
    """How the aggregate judges: level, margin (and whether the folders fixed them), correction,
    and whether scores are normalised by the teacher."""

    alpha: float
    margin: float
    correction: str
    normalise: bool
    preregistered: str  # where alpha and the margin come from, in words

    @property
    def unit(self) -> str:
        return "normalised score (0 = reference, 1 = teacher)" if self.normalise else "gain over the reference (points)"

    def score(self, ref: str) -> str:
        """The score against one reference, in words with its unit."""
        if self.normalise:
            return f"gain over {ref} normalised by the teacher's (0 = {ref}, 1 = teacher)"
        return f"gain over {ref} (points)"


@dataclass
class MethodNumbers:
    method: str
    iqm: dict[str, tuple[float, float, float]]  # by reference
    poi: dict[str, tuple[float, float, float]]
    across: dict[str, Across]
    verdict: dict[str, str]
    p_adj: dict[str, tuple[float, float]]  # (generalises, not on every task), adjusted


def _interval(x: tuple[float, float, float], spec: str = "+.2f") -> str:
    """A point estimate with its interval; ``spec`` ".2f" for probabilities."""
    point, lo, hi = x
    if not math.isfinite(point):
        return "—"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(point, spec)} (no interval)"
    return f"{fmt(point, spec)} [{fmt(lo, spec)}, {fmt(hi, spec)}]"


def compute(tasks: list[Task], methods: list[str], opts: Options) -> list[MethodNumbers]:
    """Every method's aggregates against each reference, and its verdicts after the family's
    adjustment (both p-values of every method and reference, adjusted together)."""
    out = []
    for m in methods:
        refs = [r for r in REFERENCES if r != m]
        pairs = {r: {t.name: t.pair(m, r) for t in tasks if m in t.runs and r in t.runs} for r in refs}
        out.append(MethodNumbers(
            m, {r: gain_iqm(pairs[r], normalise=opts.normalise, alpha=opts.alpha) for r in refs},
            {r: improvement(pairs[r], alpha=opts.alpha) for r in refs},
            {r: judge_across({t.name: t.pair(m, r) for t in tasks}, margin=opts.margin) for r in refs}, {}, {}))
    family = [(n, r) for n in out for r in n.across]
    p = adjust_pvalues([x for n, r in family for x in (n.across[r].p_generalises, n.across[r].p_short)], opts.correction)
    for i, (n, r) in enumerate(family):
        n.p_adj[r] = (float(p[2 * i]), float(p[2 * i + 1]))
        n.verdict[r] = n.across[r].verdict(*n.p_adj[r], opts.alpha)
    return out


def verdict_section(tasks: list[Task], numbers: list[MethodNumbers], opts: Options) -> Section:
    sec = Section("verdicts-across", 1, "Verdicts across tasks", short="Verdicts")
    rows, classes, frame = [], [], []
    for n in numbers:
        if n.method == BASELINE:
            continue
        gains = {name: g.gain for name, g in n.across[BASELINE].tasks.items()}
        per_task = " / ".join(fmt(gains.get(t.name), "+.2f") for t in tasks)
        missing = n.across[BASELINE].missing
        rows.append([n.method, f"{len(n.across[BASELINE].tasks) - len(missing)} of {len(tasks)}",
                     per_task or "—", _interval(n.iqm[BASELINE]), _interval(n.poi[BASELINE], ".2f"),
                     _interval(n.poi.get(CLASSICAL, (math.nan,) * 3), ".2f"),
                     f"{fmt_p(n.p_adj[BASELINE][0])} / {fmt_p(n.p_adj[BASELINE][1])}",
                     n.verdict[BASELINE] + (f" (fewer than 2 runs on {', '.join(missing)})" if missing else ""),
                     n.verdict.get(CLASSICAL, "—"), f"±{opts.margin:g} points, alpha {opts.alpha:g} ({opts.preregistered})"])
        classes.append("v-" + n.verdict[BASELINE].lower().replace(" ", "-"))
        frame.append({"method": n.method, "tasks": len(tasks) - len(missing),
                      **{f"gain_{BASELINE}_{name}": g.gain for name, g in n.across[BASELINE].tasks.items()},
                      **{f"{k}_{r}_{part}": v for r in n.iqm for k, src in (("iqm", n.iqm), ("poi", n.poi))
                         for part, v in zip(("point", "low", "high"), src[r])},
                      **{f"p_generalises_{r}": n.across[r].p_generalises for r in n.across},
                      **{f"p_not_on_every_task_{r}": n.across[r].p_short for r in n.across},
                      **{f"p_adjusted_{r}": "/".join(f"{x:.4g}" for x in n.p_adj[r]) for r in n.p_adj},
                      **{f"verdict_{r}": n.verdict[r] for r in n.verdict},
                      "alpha": opts.alpha, "margin": opts.margin})
    sec.table(Table(["method", "tasks", f"gain over {BASELINE} (points): {' / '.join(t.name for t in tasks)}",
                     f"IQM of the {opts.score(BASELINE)} [CI]",
                     f"P(> {BASELINE}) [CI]", f"P(> {CLASSICAL}) [CI]", "p adjusted (generalises / not on every task)",
                     f"verdict vs {BASELINE}", f"vs {CLASSICAL}", "judged at"],
                    rows, "verdicts_across.csv", pd.DataFrame(frame), classes, "verdict-table",
                    f"One verdict per method over {len(tasks)} tasks"))
    sec.note(f"GENERALISES: better than the reference on every task (one-sided Welch on each; the largest p-value, "
             f"an intersection-union test). NOT ON EVERY TASK: on at least one task the gain is shown to be smaller "
             f"than the ±{opts.margin:g}-point margin (the smallest p-value times the number of tasks). INCONCLUSIVE: "
             f"neither. Both p-values of every method and reference are adjusted together with "
             f"{CORRECTIONS[opts.correction]}. P(> reference) is the chance that a run of the method beats one of "
             f"the reference, averaged over tasks, with Newcombe's score interval; the IQM is the interquartile mean "
             f"of every run's score with a stratified bootstrap interval ({1 - opts.alpha:.0%}).")
    return sec


def metrics_section(numbers: list[MethodNumbers], colour: dict[str, str], opts: Options) -> Section:
    sec = Section("aggregates", 2, "Aggregate metrics", short="Aggregates")
    order = sorted((n for n in numbers if n.method != BASELINE),
                   key=lambda n: -n.iqm[BASELINE][0] if math.isfinite(n.iqm[BASELINE][0]) else math.inf)
    names = [n.method for n in order]
    iqm_panels = {f"IQM vs {r}": {n.method: n.iqm[r] for n in order if r in n.iqm} for r in REFERENCES}
    sec.figure("aggregate_iqm", "Interquartile mean of the score across tasks",
               f"Each bar is a {1 - opts.alpha:.0%} stratified bootstrap interval, the tick its IQM; a bar wholly "
               "right of the dotted line is a gain over that reference across the tasks taken together.",
               lambda: agg_figures.intervals(iqm_panels, names, colour, opts.unit, 0.0,
                                             "Aggregate score across tasks (IQM)"))
    poi_panels = {f"P(method > {r})": {n.method: n.poi[r] for n in order if r in n.poi} for r in REFERENCES}
    sec.figure("probability_of_improvement", "Probability of improvement",
               "A bar wholly right of 0.5 means the method's runs beat the reference's more often than not, across "
               "the tasks; methods without an interval had fewer than 2 runs somewhere.",
               lambda: agg_figures.improvement(poi_panels, names, colour))
    return sec


def profiles_section(tasks: list[Task], methods: list[str], colour: dict[str, str], opts: Options) -> Section:
    sec = Section("profiles", 3, "Performance profiles", short="Profiles")
    pairs = {m: {t.name: t.pair(m, BASELINE) for t in tasks if m in t.runs and BASELINE in t.runs}
             for m in methods if m != BASELINE}
    allscores = [s for p in pairs.values() for s in [x.runs - x.ref.mean() for x in p.values()] if s.size]
    if not allscores:
        sec.p("No task has runs of both a method and the baseline.")
        return sec
    values = np.concatenate(allscores)
    if opts.normalise:
        values = np.concatenate([(x.runs - x.ref.mean()) / (x.teacher - x.ref.mean())
                                 for p in pairs.values() for x in p.values() if x.runs.size])
    taus = np.linspace(float(values.min()) - 0.05, float(values.max()) + 0.05, 200)
    # most runs: from a little below the lower quartile of every score to the best one
    q1, q3 = np.quantile(values, [0.25, 0.75])
    zoom = (max(float(values.min()), float(q1 - 1.5 * (q3 - q1))) - 0.05, float(values.max()) + 0.05)
    curves = {m: profile(p, taus, normalise=opts.normalise, alpha=opts.alpha) for m, p in pairs.items()}
    sec.figure("performance_profiles", "Performance profiles",
               f"The share of runs whose {opts.score(BASELINE)} exceeds tau, averaged "
               "over tasks, with stratified bootstrap bands: a curve that stays above another dominates it; right of "
               "the dotted line a run beats the baseline's mean.",
               lambda: agg_figures.profiles(taus, curves, colour, f"tau: {opts.score(BASELINE)}", zoom))
    frame = pd.DataFrame([{"method": m, "tau": t, "share": c[0][i], "low": c[1][i], "high": c[2][i]}
                          for m, c in curves.items() for i, t in enumerate(taus)])
    half = 0.5  # half a point, or half the way to the teacher when normalised
    sec.table(Table(["method", f"share of runs above {BASELINE}'s mean", f"share above {half:g}" + ("" if opts.normalise else " points")],
                    [[m, fmt(float(np.interp(0.0, taus, c[0])), ".2f"), fmt(float(np.interp(half, taus, c[0])), ".2f")]
                     for m, c in curves.items()], "performance_profiles.csv", frame))
    return sec


def matrix_section(tasks: list[Task], methods: list[str]) -> Section:
    sec = Section("cross-architecture", 4, "Cross-architecture matrix", short="Architectures")
    rows = [m for m in methods if m != BASELINE]
    cols = [t.name for t in tasks]
    values = np.full((len(rows), len(cols)), np.nan)
    for j, t in enumerate(tasks):
        if BASELINE not in t.runs:
            continue
        for i, m in enumerate(rows):
            if m in t.runs:
                values[i, j] = float(t.runs[m].mean() - t.runs[BASELINE].mean())
    sec.table(Table(["method", *cols], [[m, *(fmt(v, "+.2f") for v in values[i])] for i, m in enumerate(rows)],
                    "cross_architecture.csv", pd.DataFrame(values, index=rows, columns=cols).rename_axis("method").reset_index()))
    sec.figure("matrix", "Cross-architecture matrix", "Each cell is the method's mean gain over the baseline on one "
               "task. A row that stays blue across every task generalises; one blue cell among white or red ones is "
               "the seed survey's finding for feature distillation: a gain tied to one architecture pair.",
               lambda: figures.matrix(values, rows, cols))
    return sec


def folders_section(tasks: list[Task], warnings: list[str]) -> Section:
    sec = Section("folders", 5, "Study folders and budgets", short="Folders")
    for w in warnings:
        sec.warn(w)
    rows = []
    for t in tasks:
        f = t.folder
        rows.append([t.name, str(f.path), str(f.trials), ", ".join(map(str, f.seeds)), str(f.epochs),
                     str(f.study.get("budget_hash", "—")), fmt(t.teacher_acc), str(len(t.runs))])
    sec.table(Table(["task", "study folder", "trials", "seeds", "epochs", "budget hash", "teacher test acc (%)",
                     "methods with runs"], rows, "folders.csv",
                    pd.DataFrame(rows, columns=["task", "folder", "trials", "seeds", "epochs", "budget_hash",
                                                "teacher_test_acc", "methods"])))
    if not warnings:
        sec.note("Every folder was made under the same budget (trials, seeds, split, recipe, concurrency); only the "
                 "data set, the pair and the methods' pair-specific options differ.")
    return sec
