"""Calibration of the absolute verdicts by simulation, with the project's own functions.

Each cell simulates many audits of one claim: the paper's k runs and our n runs are normal with
seed spread ``sigma`` (the claim's spread ``ratio`` times ours), the method as we run it is ``d``
points from the method as the paper ran it, and the claim is the statistic its selection rule
names. Every audit goes through ``judge_batch``, the core ``judge_claim`` uses. The measured
rates are what the tests assert and what ``python -m audit.judge.calibration`` prints for the
README.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from audit.judge.claim import DEFAULT_ALPHA, DEFAULT_MARGIN, judge_batch
from audit.judge.claim_model import ClaimModel
from audit.judge.claim_power import rates

KINDS = ("single", "mean", "mean_std", "median", "best")  # how the claim came about
GRID_K = (1, 2, 3, 5)
GRID_N = (3, 5, 10)
GRID_SIGMA = (0.2, 0.5, 1.0)
CLAIM = 73.0  # the level is irrelevant (everything is a difference); a CIFAR-100-like number


@dataclass(frozen=True)
class Cell:
    """The measured rates of one cell, with the exact ones the model predicts."""

    not_reproduced: float
    reproduced: float
    exceeded: float
    coverage: float  # of the 1 - 2 alpha interval of d
    predicted: dict[str, float]
    audits: int

    def se(self, p: float) -> float:
        """Binomial standard error of a rate p measured on this cell's audits."""
        return math.sqrt(max(p * (1 - p), 1e-12) / self.audits)


def model_of(kind: str, k: int, noise: str = "shared") -> ClaimModel:
    statistic = {"median": "median", "best": "best"}.get(kind, "mean")
    return ClaimModel(statistic, 1 if kind == "single" else k, noise)


def simulate(kind: str, k: int, n: int, sigma: float, d: float, *, audits: int = 4000, seed: int = 0,
             noise: str = "shared", ratio: float = 1.0, margin: float = DEFAULT_MARGIN,
             alpha: float = DEFAULT_ALPHA) -> Cell:
    """``audits`` audits of one claim (``kind`` of ``k`` runs) against ``n`` runs, true difference ``d``."""
    rng = np.random.default_rng(seed)
    model = model_of(kind, k, noise)
    k_runs = model.runs
    paper = rng.normal(CLAIM, sigma * ratio, size=(audits, k_runs))
    claimed = {"median": np.median(paper, axis=1), "best": paper.max(axis=1)}.get(model.statistic, paper.mean(axis=1))
    claimed_std = paper.std(axis=1, ddof=1) if kind == "mean_std" else None
    runs = rng.normal(CLAIM + d, sigma, size=(audits, n))
    res = judge_batch(runs, claimed, model, claimed_std=claimed_std, margin=margin, alpha=alpha)
    code = res["code"]
    # the true d is a difference of method means: the claim's selection is not part of it
    cover = float(np.mean((res["ci_low"] <= d) & (d <= res["ci_high"])))
    predicted = rates(d, n, sigma, model, margin=margin, alpha=alpha,
                      claimed_std=(sigma * ratio if kind == "mean_std" else None))
    return Cell(float(np.mean(code == 2)), float(np.mean(code == 1)), float(np.mean(code == 3)), cover, predicted, audits)


def grid(kinds: tuple[str, ...] = KINDS) -> list[tuple[str, int, int, float]]:
    """Every (kind, k, n, sigma) cell of the calibration grid; a single run has k = 1 only, and
    the claims that are statistics of several runs have k >= 2."""
    out = []
    for kind in kinds:
        for k in GRID_K:
            if (kind == "single") != (k == 1):
                continue
            out += [(kind, k, n, s) for n in GRID_N for s in GRID_SIGMA]
    return out


def measure(shortfall: float = 1.0, audits: int = 4000) -> list[dict]:
    """Every cell of the grid: under a true claim, at the margin, and under a true shortfall."""
    rows = []
    for i, (kind, k, n, s) in enumerate(grid()):
        true = simulate(kind, k, n, s, 0.0, audits=audits, seed=3 * i)
        edge = simulate(kind, k, n, s, -DEFAULT_MARGIN, audits=audits, seed=3 * i + 1)
        short = simulate(kind, k, n, s, -shortfall, audits=audits, seed=3 * i + 2)
        rows.append({"kind": kind, "k": k, "n": n, "sigma": s, "nr_true": true.not_reproduced,
                     "cover_true": true.coverage, "nr_edge": edge.not_reproduced, "power": short.not_reproduced,
                     "power_exact": short.predicted["NOT REPRODUCED"]})
    return rows


def full_table(rows: list[dict], shortfall: float) -> str:
    lines = ["| claim | k | n | spread | NOT REPRODUCED, true claim | coverage, true claim | "
             f"NOT REPRODUCED at the margin | power, shortfall {shortfall:g} (measured / exact) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['kind']} | {r['k']} | {r['n']} | {r['sigma']:g} | {r['nr_true']:.3f} | {r['cover_true']:.3f} | "
              f"{r['nr_edge']:.3f} | {r['power']:.3f} / {r['power_exact']:.3f} |" for r in rows]
    return "\n".join(lines)


def summary_table(rows: list[dict], shortfall: float) -> str:
    """One line per kind of claim and k: the worst and the range over n and spread, and the power at
    spread 0.5 for each n."""
    lines = ["| claim | k | NOT REPRODUCED, true claim (max) | coverage, true claim (min-max) | "
             f"NOT REPRODUCED at the margin (min-max) | power, shortfall {shortfall:g}, spread 0.5: n = 3 / 5 / 10 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, k in dict.fromkeys((r["kind"], r["k"]) for r in rows):
        cell = [r for r in rows if (r["kind"], r["k"]) == (kind, k)]
        power = " / ".join(f"{r['power']:.2f}" for r in cell if r["sigma"] == 0.5)
        lines.append(f"| {kind} | {k} | {max(r['nr_true'] for r in cell):.3f} | "
                     f"{min(r['cover_true'] for r in cell):.3f}-{max(r['cover_true'] for r in cell):.3f} | "
                     f"{min(r['nr_edge'] for r in cell):.3f}-{max(r['nr_edge'] for r in cell):.3f} | {power} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the calibration tables of the absolute verdicts (Markdown).")
    parser.add_argument("--audits", type=int, default=4000, help="simulated audits per cell (default 4000)")
    parser.add_argument("--shortfall", type=float, default=1.0, help="true shortfall of the power column (points)")
    args = parser.parse_args(argv)
    rows = measure(args.shortfall, args.audits)
    print(summary_table(rows, args.shortfall))
    print()
    print(full_table(rows, args.shortfall))


if __name__ == "__main__":
    main()
