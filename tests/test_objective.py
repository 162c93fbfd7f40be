"""The search objective: validation accuracy, ties broken by validation log-loss, never reordering
two accuracies one image apart."""
from __future__ import annotations

import math

import pytest

from audit.search.objective import NLL_CAP, search_objective, with_objective


def test_lower_log_loss_wins_a_tie():
    assert search_objective(97.21, 0.08, 179) > search_objective(97.21, 0.20, 179)


@pytest.mark.parametrize("n_val", [50, 179, 288, 10_000])
def test_one_image_more_always_wins(n_val):
    one = 100.0 / n_val
    worst_better = search_objective(90.0 + one, NLL_CAP * 5, n_val)  # capped: a diverged log-loss
    best_worse = search_objective(90.0, 0.0, n_val)
    assert worst_better > best_worse
    assert best_worse - worst_better < 0  # and the gap stays under one image
    assert 90.0 + one - worst_better <= one / 2 + 1e-12


def test_missing_values():
    assert math.isnan(search_objective(math.nan, 0.1, 100))
    assert with_objective({"val_acc": 90.0}, 100)["objective"] is None
    rec = with_objective({"val_acc": 90.0, "val_nll": 0.3, "seed": 1}, 100)
    assert rec["seed"] == 1 and rec["objective"] == pytest.approx(90.0 - 1.0 * 0.3 / 20)
