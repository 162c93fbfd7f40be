"""Figures of the reproducibility report, drawn with matplotlib's Agg backend.

Each function takes plain numbers (no study folder) and returns a ``matplotlib.figure.Figure``;
``to_png`` turns it into PNG bytes that the report embeds. Every figure has a title and axis
labels with units; the caption saying what to look for lives with the report.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")  # a report is a batch job: never open a window, never need a display

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from optuna.visualization.matplotlib import plot_param_importances  # noqa: E402

from methods.catalogue import BASELINE, CLASSICAL  # noqa: E402

# Names come from study folders: with math parsing off, a '$' in a name is text, not mathtext
# that could fail to parse and take the report down.
_RC = {
    "text.parse_math": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 110,
}
REFERENCE_COLOURS = {BASELINE: "#7f7f7f", CLASSICAL: "#1f77b4"}  # grey and blue
_PALETTE = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
HP_LABELS = {
    "temperature": "temperature T (unitless)",
    "alpha": "alpha: weight of the KD term (0-1)",
    "strength": "augmentation strength (0-1)",
}


def short(name: str, limit: int = 28) -> str:
    """A label that cannot squeeze the axes away: long names are cut (the tables keep them whole)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


@contextmanager
def style():
    with matplotlib.rc_context(_RC):
        yield


def colours(methods: Sequence[str]) -> dict[str, str]:
    """One stable colour per method: the references keep theirs in every figure. Past the eight
    of the base palette (an every-method study has 26) the colours come from tab20 and tab20b,
    and ``markers`` tells apart any that still look alike."""
    others = [m for m in methods if m not in REFERENCE_COLOURS]
    palette = _PALETTE
    if len(others) > len(_PALETTE):
        palette = [to_hex(c) for name in ("tab20", "tab20b") for c in plt.get_cmap(name).colors]
        palette = [c for c in palette if c not in REFERENCE_COLOURS.values()]
    out = {m: REFERENCE_COLOURS[m] for m in methods if m in REFERENCE_COLOURS}
    out.update({m: palette[i % len(palette)] for i, m in enumerate(others)})
    return out


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def markers(methods: Sequence[str]) -> dict[str, str]:
    """One marker per method, so lines and dots stay apart where colours run out or look alike."""
    return {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(methods)}


def _legend_columns(n: int) -> int:
    return 1 if n <= 14 else 2


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with style():
        fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)  # no-op for Figure() objects, frees pyplot ones (Optuna's plots)
    return buf.getvalue()


def _new(width: float, height: float, ncols: int = 1, sharey: bool = False) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def ranking(runs: Mapping[str, Sequence[float]], ci: Mapping[str, tuple[float, float]],
            colour: Mapping[str, str], ci_level: float) -> Figure:
    """Test accuracy per method: every seed a dot, the mean with its interval, the references as bands.

    ``runs`` is ordered best first (drawn top to bottom)."""
    with style():
        methods = list(runs)
        fig, (ax,) = _new(8.0, 0.6 * len(methods) + 1.6)
        rng = np.random.default_rng(0)  # the jitter only separates dots; fixed so reports are stable
        for ref, label in ((BASELINE, "no KD"), (CLASSICAL, "classical KD")):
            if ref in ci and all(np.isfinite(ci[ref])):
                lo, hi = ci[ref]
                ax.axvspan(lo, hi, color=colour.get(ref, "#999999"), alpha=0.15, lw=0,
                           label=f"{label} ({ref}) {ci_level:.0%} CI band")
        for i, m in enumerate(methods):
            y = len(methods) - 1 - i
            x = np.asarray(runs[m], float)
            ax.scatter(x, y + rng.uniform(-0.15, 0.15, x.size), s=22, color=colour[m], alpha=0.6,
                       edgecolor="none", zorder=3)
            mean = float(x.mean())
            lo, hi = ci.get(m, (np.nan, np.nan))
            if np.isfinite(lo) and np.isfinite(hi):
                ax.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="none", ecolor="black",
                            capsize=4, lw=1.2, zorder=4)
            ax.plot(mean, y, marker="D", color="black", ms=6, zorder=5)
        ax.set_yticks(range(len(methods)), labels=[short(m) for m in reversed(methods)])
        ax.set_ylim(-0.7, len(methods) - 0.3)
        ax.set_xlabel("test accuracy at the last epoch (%)")
        ax.set_ylabel("method")
        ax.set_title("Method ranking under the equal budget (confirmation runs)")
        if ax.get_legend_handles_labels()[0]:
            # below the axes: inside, it would hide the seeds of whichever method sits in a corner
            fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def expected_max_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                        colour: Mapping[str, str]) -> Figure:
    """Expected best validation accuracy against the number of trials: on the left the whole
    range with mean ± 1 sd bands (clipped to 0-100 %), on the right the means zoomed on where
    the curves end."""
    marker = markers(list(curves))
    with style():
        fig, axes = _new(11.0, 4.4, ncols=2)
        for ax in axes:
            for m, (mean, sd) in curves.items():
                n = np.arange(1, len(mean) + 1)
                ax.plot(n, mean, marker=marker[m], ms=4, color=colour[m], label=short(m))
                if ax is axes[0]:  # bands on the zoomed panel would bury its lines
                    ax.fill_between(n, np.clip(mean - sd, 0, 100), np.clip(mean + sd, 0, 100), color=colour[m], alpha=0.08, lw=0)
            ax.set_xlabel("number of hyper-parameter trials n (trials)")
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[0].set_ylabel("expected best validation accuracy (%)")
        axes[0].set_title("whole range")
        axes[1].set_title("zoomed on the end of the budget")
        ends = [float(mean[-1]) for mean, _ in curves.values() if len(mean)]
        if ends:
            low = min(ends)
            top = max(float(np.max(mean)) for mean, _ in curves.values() if len(mean))
            pad = max(0.25, 0.15 * (top - low))
            axes[1].set_ylim(low - pad, min(100.0, top + pad) + 0.05)
        fig.suptitle("Equal-budget curves: expected best of n trials", fontweight="bold")
        if curves:
            fig.legend(*axes[0].get_legend_handles_labels(), title="method", loc="outside right upper", fontsize=8,
                       ncol=_legend_columns(len(curves)))
    return fig


def sensitivity(points: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                hps: Sequence[str], colour: Mapping[str, str]) -> Figure:
    """Validation accuracy of every search trial against each shared hyper-parameter.

    ``points[method][hp] = (hp values, val accuracies)``."""
    marker = markers(list(points))
    with style():
        fig, axes = _new(4.0 * len(hps), 3.8, ncols=len(hps), sharey=True)
        for ax, hp in zip(axes, hps):
            drawn = False
            for m, by_hp in points.items():
                if hp in by_hp and len(by_hp[hp][0]):
                    x, y = by_hp[hp]
                    ax.scatter(x, y, s=20, color=colour[m], marker=marker[m], alpha=0.7, edgecolor="none", label=short(m))
                    drawn = True
            if not drawn:
                ax.text(0.5, 0.5, "no method searched it", ha="center", va="center", transform=ax.transAxes,
                        color="#666666")
            ax.set_xlabel(HP_LABELS.get(hp, hp))
            ax.set_title(hp)
        axes[0].set_ylabel("validation accuracy, last epoch (%)")
        fig.suptitle("Hyper-parameter sensitivity (every search trial)", fontweight="bold")
        handles, labels = [], []
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, title="method", loc="outside right upper", fontsize=8, ncol=_legend_columns(len(labels)))
    return fig


def importances(ostudy: optuna.Study, evaluator: optuna.importance.BaseImportanceEvaluator | None,
                method: str) -> Figure:
    """Optuna's own importance plot, titled and labelled for the report."""
    with style(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_param_importances(ostudy, evaluator=evaluator, target_name="validation accuracy")
        fig = ax.figure
        fig.set_size_inches(4.2, 0.4 * len(ax.patches) + 1.6)  # shown a third of the page wide
        ax.set_title("", loc="left")  # Optuna's own, left-aligned title would overlap ours
        ax.set_title(f"Importance: {short(method)}")
        ax.set_xlabel("share of val. accuracy variance (fANOVA, unitless)")
        ax.set_ylabel("hyper-parameter")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    return fig


def budget(methods: Sequence[str], images: Mapping[str, tuple[float, float]],
           wall: Mapping[str, tuple[float, float]], colour: Mapping[str, str]) -> Figure:
    """Images seen and wall time (seconds), each split into search and confirmation."""
    with style():
        fig, axes = _new(9.0, 0.45 * len(methods) + 1.8, ncols=2)
        y = np.arange(len(methods))[::-1]
        top_images = max((sum(v) for v in images.values()), default=0.0)
        top_wall = max((sum(v) for v in wall.values()), default=0.0)
        # Readable tick labels: thousands of images for small studies, millions for real ones.
        img_div, img_unit = (1e6, "millions") if top_images >= 1e6 else (1e3, "thousands")
        wall_div, wall_unit = (3600, "hours") if top_wall >= 3 * 3600 else (60, "minutes") if top_wall >= 180 else (1, "seconds")
        for ax, data, div, unit, title in (
            (axes[0], images, img_div, f"images seen ({img_unit})", "Training images per method"),
            (axes[1], wall, wall_div, f"wall time ({wall_unit})", "Wall time per method"),
        ):
            search = np.array([data[m][0] for m in methods]) / div
            conf = np.array([data[m][1] for m in methods]) / div
            ax.barh(y, search, color=[colour[m] for m in methods], alpha=0.85, label="search")
            ax.barh(y, conf, left=search, color=[colour[m] for m in methods], alpha=0.4, hatch="//",
                    label="confirmation")
            ax.set_yticks(y, labels=[short(m) for m in methods])
            ax.set_xlabel(unit)
            ax.set_title(title)
        axes[0].set_ylabel("method")
        fig.suptitle("Budget and compute per method (search and confirmation)", fontweight="bold")
        fig.legend(*axes[1].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def matrix(values: np.ndarray, rows: Sequence[str], cols: Sequence[str]) -> Figure:
    """Gain over no-KD (points) per method (rows) and teacher->student pair (columns)."""
    with style():
        fig, (ax,) = _new(1.3 * len(cols) + 3.0, 0.55 * len(rows) + 2.0)
        finite = values[np.isfinite(values)]
        lim = float(np.max(np.abs(finite))) if finite.size else 1.0
        im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.grid(False)
        ax.set_xticks(range(len(cols)), labels=list(cols), rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), labels=[short(r) for r in rows])
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = values[i, j]
                ax.text(j, i, "-" if not np.isfinite(v) else f"{v:+.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(im, ax=ax, label=f"test accuracy gain over {BASELINE} (points)")
        ax.set_xlabel("teacher → student pair")
        ax.set_ylabel("method")
        ax.set_title("Cross-architecture matrix: gain over no KD")
    return fig
