"""What the search maximises for every method: the validation accuracy at the end of the budget,
ties broken by the validation log-loss.

Accuracy on a few hundred validation images moves in steps of one image, so many trials tie, and
the best ones most of all; the log-loss (a proper scoring rule, continuous) orders them. It only
breaks ties: the term is at most half of one image's share, so it never reorders two accuracies
that differ by an image. Torch-free: the driver and the report use it too.
"""
from __future__ import annotations

import math

METRIC = "objective"  # the key of the value told to Optuna, in every run's record
NLL_CAP = 10.0  # nats: a diverged run's log-loss is capped, so the tie-break stays under half an image


def search_objective(val_acc: float, val_nll: float, n_val: int) -> float:
    """The value told to Optuna (higher is better)."""
    if not (math.isfinite(val_acc) and math.isfinite(val_nll)):
        return math.nan
    one_image = 100.0 / n_val
    return val_acc - one_image * min(val_nll, NLL_CAP) / (2 * NLL_CAP)


def with_objective(metrics: dict, n_val: int) -> dict:
    """``metrics`` (a run's record or one epoch's metrics) with the objective added."""
    nll = metrics.get("val_nll")
    return {**metrics, METRIC: search_objective(metrics["val_acc"], nll, n_val) if nll is not None else None}
