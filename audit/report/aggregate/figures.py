"""Figures of the aggregate report, drawn as rliable draws them: interval estimates of an aggregate
score per method, the probability of improvement over each reference, and performance profiles.
Each takes plain numbers and returns a matplotlib Figure (``figures.to_png`` makes the PNG)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from audit.report.figures import _legend_columns, _new, markers, short, style

Interval = tuple[float, float, float]  # point, low, high


def _interval_axis(ax, order: Sequence[str], values: Mapping[str, Interval], colour: Mapping[str, str]) -> None:
    y = np.arange(len(order))[::-1]
    for yi, m in zip(y, order):
        point, lo, hi = values.get(m, (np.nan, np.nan, np.nan))
        if np.isfinite(lo) and np.isfinite(hi):
            ax.barh(yi, hi - lo, left=lo, height=0.6, color=colour[m], alpha=0.35, lw=0)
        if np.isfinite(point):
            ax.plot([point, point], [yi - 0.3, yi + 0.3], color=colour[m], lw=2.2)
    ax.set_yticks(y, labels=[short(m) for m in order])
    ax.set_ylim(-0.7, len(order) - 0.3)


def intervals(panels: Mapping[str, Mapping[str, Interval]], order: Sequence[str], colour: Mapping[str, str],
              xlabel: str, zero: float, title: str) -> Figure:
    """One panel per aggregate (e.g. IQM of the gain over each reference): every method's point
    estimate (a tick) and interval (a bar), a dotted line at ``zero``."""
    with style():
        fig, axes = _new(4.2 * len(panels) + 1.0, 0.32 * len(order) + 1.6, ncols=len(panels), sharey=True)
        for ax, (name, values) in zip(axes, panels.items()):
            _interval_axis(ax, order, values, colour)
            ax.axvline(zero, color="#555555", ls=":", lw=1)
            ax.set_title(name)
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel("method")
        fig.suptitle(title, fontweight="bold")
    return fig


def improvement(panels: Mapping[str, Mapping[str, Interval]], order: Sequence[str], colour: Mapping[str, str]) -> Figure:
    """P(method > reference), averaged over tasks, one panel per reference, 0.5 marked."""
    with style():
        fig = intervals(panels, order, colour, "P(a run of the method beats one of the reference)", 0.5,
                        "Probability of improvement, averaged over tasks")
        for ax in fig.axes:
            ax.set_xlim(0, 1)
    return fig


def profiles(taus: np.ndarray, curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
             colour: Mapping[str, str], xlabel: str, zoom: tuple[float, float]) -> Figure:
    """Performance profiles: the share of runs (averaged over tasks) scoring above each threshold,
    on the left over the whole range, on the right zoomed on ``zoom`` (where most runs lie), with
    stratified bootstrap bands when few enough methods leave them readable."""
    marker = markers(list(curves))
    bands = len(curves) <= 8
    with style():
        fig, axes = _new(12.0, 5.0, ncols=2, sharey=True)
        every = max(1, len(taus) // 8)
        for ax in axes:
            for m, (point, lo, hi) in curves.items():
                ax.plot(taus, point, color=colour[m], marker=marker[m], ms=4, markevery=every, label=short(m),
                        drawstyle="steps-post")
                if bands:
                    ax.fill_between(taus, lo, hi, color=colour[m], alpha=0.08, lw=0, step="post")
            ax.axvline(0.0, color="#555555", ls=":", lw=1)
            ax.set_xlabel(xlabel)
        axes[0].set_ylim(-0.02, 1.02)
        axes[1].set_xlim(*zoom)
        axes[0].set_ylabel("share of runs scoring above tau (0-1)")
        axes[0].set_title("whole range")
        axes[1].set_title("zoomed on most runs")
        fig.suptitle("Performance profiles (score distributions over tasks)"
                     + ("" if bands else "; bands in the table's CSV"), fontweight="bold")
        if curves:
            fig.legend(*axes[0].get_legend_handles_labels(), title="method", loc="outside right upper", fontsize=8,
                       ncol=_legend_columns(len(curves)))
    return fig
