"""How a claimed number is modelled before it is judged: what statistic of how many runs it is,
and how its seed noise is treated (``audit.judge.noise`` holds the distributions).

Noise treatments (``NOISES``):

``shared`` (default)
    The claim's runs and ours share one seed spread sigma. sigma is estimated from every run at
    hand: ours, the claim's stated std when it gives one (k - 1 degrees of freedom), and, when
    asked, the study's other methods (``others``: their sum of squared deviations and degrees of
    freedom). A claim that states no number of runs is taken as a single run, the noisiest case.
    Exact under the model (normal runs, one spread).
``welch``
    The claim keeps its own stated std: Welch's standard error sqrt(s^2/n + s_c^2/k) with Hsu's
    degrees of freedom min(n, k) - 1, which holds the level whatever the two spreads (Welch-
    Satterthwaite's estimated df is liberal with 2-3 claimed runs). Needs a stated std of a mean.
``exact``
    The claimed number is a constant without noise (the one-sample t of the old verdicts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from audit.errors import AuditError, unknown
from audit.judge.noise import STATISTICS, Pivot, w_moments

NOISES = ("shared", "welch", "exact")
_STATISTIC_TEXT = {"mean": "the mean of {k} runs", "median": "the median of {k} runs", "best": "the best of {k} seeds"}


@dataclass(frozen=True)
class ClaimModel:
    """A claim as a random variable: ``statistic`` (mean, median or best) of ``k`` runs (``None``:
    not stated, taken as 1) and how its noise is treated (one of ``NOISES``)."""

    statistic: str = "mean"
    k: int | None = None
    noise: str = "shared"

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise unknown("claim statistic", self.statistic, STATISTICS)
        if self.noise not in NOISES:
            raise unknown("claim noise model", self.noise, NOISES)
        if self.k is not None and self.k < 1:
            raise AuditError(f"claimed runs must be at least 1; got {self.k}")
        if self.statistic != "mean" and self.k is None:
            raise AuditError(f"a claim that is the {self.statistic} of k runs needs k (its number of runs)")

    @property
    def runs(self) -> int:
        """The claim's number of runs as modelled: 1 when not stated (the most noise a claim can carry)."""
        return self.k or 1

    @property
    def noise_k(self) -> int:
        """k of the pivot: 0 for an exact claim (no noise)."""
        return 0 if self.noise == "exact" else self.runs

    def selection_shift(self) -> float:
        """How far above its method's mean the claim sits on average, in seed standard deviations."""
        return 0.0 if self.noise == "exact" else w_moments(self.statistic, self.runs)[0]

    def what(self) -> str:
        """The claim in words: "a single run", "the best of 5 seeds", ..."""
        if self.runs == 1:
            return "a single run" + ("" if self.k else " (its number of runs is not stated: taken as 1, the noisiest case)")
        return _STATISTIC_TEXT[self.statistic].format(k=self.runs)


@dataclass(frozen=True)
class Spread:
    """The seed spread an absolute verdict uses: the estimate (one per audit), its degrees of
    freedom and where it came from."""

    sigma: np.ndarray
    df: float
    source: str


def _pooled_std(claimed_std: float | np.ndarray | None, k: int) -> tuple[np.ndarray | float, int]:
    if claimed_std is None or k < 2:
        return 0.0, 0
    return (k - 1) * np.asarray(claimed_std, float) ** 2, k - 1


def estimate(model: ClaimModel, runs: np.ndarray, claimed_std: float | np.ndarray | None,
             others: tuple[float, float] | None) -> tuple[Spread, Pivot, np.ndarray]:
    """(spread, pivot, standard error) of each row of ``runs`` (audits x runs) under ``model``."""
    n = runs.shape[-1]
    ss_ours = ((runs - runs.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1) if n >= 2 else np.zeros(runs.shape[:-1])
    if model.noise == "welch":
        if claimed_std is None or model.runs < 2 or model.statistic != "mean":
            raise AuditError("the welch noise model needs the claim's std and number of runs (at least 2) of a mean")
        s = np.sqrt(ss_ours / (n - 1)) if n >= 2 else np.full(ss_ours.shape, np.nan)
        df = float(min(n, model.runs) - 1)
        se = np.sqrt(s**2 / n + np.asarray(claimed_std, float) ** 2 / model.runs)
        spread = Spread(s, df, f"its stated std {_num(claimed_std)} over {model.runs} runs and ours, kept apart "
                                f"(Welch's standard error, Hsu's df = min(n, k) - 1 = {df:g})")
        return spread, Pivot("mean", 0, n, max(df, 1.0)), se
    parts = [f"our {n} run{'s' if n != 1 else ''}"]
    ss, df = ss_ours, n - 1
    if model.noise == "shared":
        claim_ss, claim_df = _pooled_std(claimed_std, model.runs)
        if claim_df:
            ss, df = ss + claim_ss, df + claim_df
            parts.append(f"the claim's stated std ({claim_df} df)")
    if others is not None and others[1] > 0:
        ss, df = ss + others[0], df + others[1]
        parts.append(f"the study's other methods ({others[1]:g} df)")
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(ss / df) if df > 0 else np.full(np.shape(ss), np.nan)
    pivot = Pivot(model.statistic, model.noise_k, n, float(max(df, 1)))
    source = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 2 else parts)
    return Spread(sigma, float(df), f"seed spread from {source}, {df:g} df"), pivot, sigma * pivot.scale


def describe(model: ClaimModel, spread: Spread) -> str:
    """One line: how the claim was modelled and which spread judged it."""
    sigma = float(np.asarray(spread.sigma).ravel()[0]) if np.size(spread.sigma) else math.nan
    s = f"s = {sigma:.2f}" if math.isfinite(sigma) else "s unknown"
    if model.noise == "exact":
        return f"taken as exact (a constant, no seed noise of its own); {s}, {spread.source}"
    if model.noise == "welch":
        return f"{model.what()} with {spread.source}; our s = {s.removeprefix('s = ')}"
    text = f"{model.what()} with the same seed spread as ours ({s}, {spread.source.removeprefix('seed spread ')})"
    if model.statistic == "best" and model.runs > 1:
        text += (f"; selection: the best of {model.runs} sits {model.selection_shift():.2f} s above its method's "
                 f"mean on average, and the difference is corrected for it")
    return text


def _num(x: float | np.ndarray | None) -> str:
    return "—" if x is None else f"{float(np.asarray(x).ravel()[0]):.2f}"
