"""The claim's own noise: a published number is one draw of a random variable, like each of ours.

A claim C is a statistic of the paper's k runs, each run ``mu_c + sigma * X`` with X ~ N(0, 1):

* ``mean`` of k runs (a single run is the mean of one): C = mu_c + sigma * W, W ~ N(0, 1/k);
* ``median`` of k runs: W is the median of k standard normals;
* ``best`` of k seeds: W is the maximum of k standard normals (its mean is above 0: selection);
* ``exact``: the claim taken as a constant, W = 0 (the old behaviour, an explicit option).

Our n runs are ``mu_r + sigma * Z_i``. With sigma estimated on ``df`` degrees of freedom
(sigma_hat = sigma * S, S^2 ~ chi2_df / df, independent of the means), the quantity

    Q = (mean(Y) - C - d) / sigma_hat = (mean(Z) - W) / S,        d = mu_r - mu_c,

depends on (statistic, k, n, df) only: a pivot. Every verdict, interval, p-value and power of an
absolute claim is read off it, so they are exact under the model (normal runs, one seed spread
shared by the claim's runs and ours). ``Pivot`` holds the distribution of G = Q / c, with
c = sqrt(1/n + Var W) the standard error in units of sigma: for a normal W, G is Student's t with
``df`` degrees of freedom; for an order statistic it is computed here numerically (the density of
mean(Z) - W by convolution on a grid, then an integral over S by Gauss-Legendre quadrature).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import optimize, signal, special, stats

STATISTICS = ("mean", "median", "best")
_GRID_HALF = 10.0  # grids cover W and mean(Z) within +-10 standard deviations of one run
_NODES = 160  # Gauss-Legendre nodes over S


def _log_order_density(w: np.ndarray, j: int, k: int) -> np.ndarray:
    """log density of the j-th smallest of k standard normals."""
    log_c = math.log(k) + special.gammaln(k) - special.gammaln(j) - special.gammaln(k - j + 1)
    return (log_c + stats.norm.logpdf(w) + (j - 1) * stats.norm.logcdf(w)
            + (k - j) * stats.norm.logcdf(-w))


def _w_density(statistic: str, k: int, grid: np.ndarray) -> np.ndarray:
    """Density of the standardised claim noise W on ``grid``."""
    if statistic == "mean" or k == 1 or (statistic == "median" and k == 2):  # a median of two is their mean
        return stats.norm.pdf(grid, scale=1 / math.sqrt(k))
    if statistic == "best":
        return np.exp(_log_order_density(grid, k, k))
    if k % 2:  # odd median: the middle order statistic
        return np.exp(_log_order_density(grid, (k + 1) // 2, k))
    coarse, dens = _even_median_density(k)
    return np.interp(grid, coarse, dens, left=0.0, right=0.0)


@lru_cache(maxsize=16)
def _even_median_density(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The median of an even number k of standard normals is the average of the two middle order
    statistics u < v, so f_W(w) = 2 * integral over u < w of g(u, 2w - u) du, g their joint density."""
    j = k // 2
    u = np.linspace(-_GRID_HALF, _GRID_HALF, 2401)
    du = u[1] - u[0]
    coarse = np.linspace(-_GRID_HALF / 2, _GRID_HALF / 2, 1601)
    log_c = special.gammaln(k + 1) - special.gammaln(j) - special.gammaln(k - j)
    uu, ww = u[None, :], coarse[:, None]
    v = 2 * ww - uu
    log_g = (log_c + (j - 1) * stats.norm.logcdf(uu) + stats.norm.logpdf(uu) + stats.norm.logpdf(v)
             + (k - j - 1) * stats.norm.logcdf(-v))
    return coarse, 2 * np.where(uu < ww, np.exp(log_g), 0.0).sum(axis=1) * du


def w_moments(statistic: str, k: int) -> tuple[float, float]:
    """Mean and variance of W (in units of one run's sigma)."""
    if statistic == "mean" or k == 1 or (statistic == "median" and k == 2):
        return 0.0, 1.0 / k
    return _w_moments(statistic, k)


@lru_cache(maxsize=64)
def _w_moments(statistic: str, k: int) -> tuple[float, float]:
    grid = np.linspace(-_GRID_HALF, _GRID_HALF, 40001)
    f = _w_density(statistic, k, grid)
    f = f / np.trapezoid(f, grid)
    mean = float(np.trapezoid(grid * f, grid))
    return mean, float(np.trapezoid((grid - mean) ** 2 * f, grid))


@lru_cache(maxsize=256)
def _d_cdf_table(statistic: str, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CDF of D = mean(Z) - W on a grid: the convolution of N(0, 1/n) with the density of -W."""
    sd_z = 1 / math.sqrt(n)
    h = min(2e-3, sd_z / 25)  # at least 25 grid steps per standard deviation of mean(Z)
    half = _GRID_HALF
    x = np.arange(-half, half + h / 2, h)
    f_z = stats.norm.pdf(x, scale=sd_z)
    f_minus_w = _w_density(statistic, k, -x)
    f_d = signal.fftconvolve(f_z, f_minus_w) * h
    d_grid = np.arange(f_d.size) * h - 2 * half
    cdf = np.concatenate([[0.0], np.cumsum((f_d[1:] + f_d[:-1]) / 2) * h])
    cdf = np.clip(cdf / cdf[-1], 0.0, 1.0)
    return d_grid, cdf


@lru_cache(maxsize=1)
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(_NODES)


@lru_cache(maxsize=256)
def s_nodes(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights of S = sqrt(chi2_df / df) (one node of weight 1 when df is infinite)."""
    if not math.isfinite(df):
        return np.ones(1), np.ones(1)
    dist = stats.chi(df, scale=1 / math.sqrt(df))
    lo, hi = (0.0 if df <= 2 else float(dist.ppf(1e-13))), float(dist.isf(1e-13))
    t, w = _legendre()
    s = lo + (hi - lo) * (t + 1) / 2
    weights = w * (hi - lo) / 2 * dist.pdf(s)
    return s, weights / weights.sum()


@dataclass(frozen=True)
class Pivot:
    """The distribution of G = (mean(Y) - C - d) / se, with se = sigma_hat * ``scale``.

    ``statistic`` and ``k`` describe the claim (``exact`` has k = 0: no noise), ``n`` our runs and
    ``df`` the degrees of freedom of sigma_hat (``inf`` for a known sigma). With ``normal`` true
    (a mean of k runs, or an exact claim) G is Student's t; otherwise it is computed numerically.
    """

    statistic: str
    k: int
    n: int
    df: float
    scale: float = field(init=False)
    normal: bool = field(init=False)

    def __post_init__(self) -> None:
        var_w = 0.0 if self.k == 0 else w_moments(self.statistic, self.k)[1]
        object.__setattr__(self, "scale", math.sqrt(1 / self.n + var_w))
        object.__setattr__(self, "normal", self.k == 0 or self.statistic == "mean" or self.k == 1
                           or (self.statistic == "median" and self.k == 2))

    def d_cdf(self, x: np.ndarray) -> np.ndarray:
        """P(mean(Z) - W <= x), in units of sigma."""
        if self.normal:
            return stats.norm.cdf(np.asarray(x, float) / self.scale)
        grid, cdf = _d_cdf_table(self.statistic, self.k, self.n)
        return np.interp(x, grid, cdf, left=0.0, right=1.0)

    def cdf(self, g: np.ndarray | float, shift: float | np.ndarray = 0.0) -> np.ndarray:
        """P((mean(Z) - W + shift) / (S * scale) <= g); ``shift`` = (d - d0) / sigma gives the
        statistic's law when the true difference d is not the tested d0 (power)."""
        g = np.asarray(g, float)
        if self.normal:
            nc = np.asarray(shift, float) / self.scale
            if not math.isfinite(self.df):
                return stats.norm.cdf(g - nc)
            if np.all(nc == 0):
                return stats.t.cdf(g, self.df)
            return stats.nct.cdf(g, self.df, nc)
        s, w = s_nodes(self.df)
        arg = g[..., None] * self.scale * s - np.asarray(shift, float)[..., None]
        return (self.d_cdf(arg) * w).sum(axis=-1)

    def sf(self, g: np.ndarray | float) -> np.ndarray:
        """1 - cdf(g), computed in the upper tail where that is more accurate."""
        g = np.asarray(g, float)
        if self.normal:
            return stats.norm.sf(g) if not math.isfinite(self.df) else stats.t.sf(g, self.df)
        return 1.0 - self.cdf(g)

    def ppf(self, p: float) -> float:
        if self.normal:
            return float(stats.norm.ppf(p) if not math.isfinite(self.df) else stats.t.ppf(p, self.df))
        return _ppf(self, p)

    @property
    def median(self) -> float:
        return 0.0 if self.normal else self.ppf(0.5)

    def band_probability(self, low: float, high: float, shift_low: float, shift_high: float) -> float:
        """P(G + shift_low / (S scale) > low and G + shift_high / (S scale) < high): both one-sided
        tests of an equivalence rejecting, exactly (an integral over S)."""
        s, w = s_nodes(self.df)
        upper = self.d_cdf(high * self.scale * s - shift_high)
        lower = self.d_cdf(low * self.scale * s - shift_low)
        return float((np.maximum(upper - lower, 0.0) * w).sum())


@lru_cache(maxsize=1024)
def _ppf(pivot: Pivot, p: float) -> float:
    lo, hi = -10.0, 10.0
    while pivot.cdf(lo) > p:
        lo *= 2
    while pivot.cdf(hi) < p:
        hi *= 2
    return float(optimize.brentq(lambda g: float(pivot.cdf(g)) - p, lo, hi, xtol=1e-10))
