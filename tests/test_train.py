"""The training engine: determinism, recorded budget, failure on a non-finite loss."""
import math

import pytest
import torch

from audit.engine.models import build_model
from audit.engine.train import Recipe, train_student

RECIPE = Recipe(epochs=2, batch_size=128, lr=0.1)


def _teacher():
    torch.manual_seed(123)
    return build_model("resnet14", in_channels=1, num_classes=10).eval()


@pytest.mark.parametrize("method", ["nokd", "kd", "feature_kd"])
def test_same_seed_same_numbers(digits, method):
    teacher = _teacher()
    config = {"strength": 0.5, "temperature": 4.0, "alpha": 0.5}
    a, _ = train_student(method=method, config=config, splits=digits, student_arch="resnet8", teacher=teacher, recipe=RECIPE, seed=7)
    b, _ = train_student(method=method, config=config, splits=digits, student_arch="resnet8", teacher=teacher, recipe=RECIPE, seed=7)
    assert a.status == b.status == "ok"
    assert a.val_acc == b.val_acc and a.test_acc == b.test_acc and a.train_loss == b.train_loss


def test_different_seed_different_numbers(digits):
    a, _ = train_student(method="nokd", config={"strength": 0.5}, splits=digits, student_arch="resnet8", teacher=None, recipe=RECIPE, seed=1)
    b, _ = train_student(method="nokd", config={"strength": 0.5}, splits=digits, student_arch="resnet8", teacher=None, recipe=RECIPE, seed=2)
    assert a.train_loss != b.train_loss


def test_budget_is_recorded(digits):
    r, _ = train_student(method="nokd", config={"strength": 0.0}, splits=digits, student_arch="resnet8", teacher=None, recipe=RECIPE, seed=0)
    n = len(digits.train)
    assert r.epochs == 2 and len(r.val_acc) == 2 and len(r.test_acc) == 2
    assert r.images == 2 * n
    assert r.steps == 2 * (n // RECIPE.batch_size)
    assert r.flops > 0 and r.wall_s > 0
    assert r.val_best == max(r.val_acc) and r.val_last == r.val_acc[-1] and r.test_last == r.test_acc[-1]
    assert all(v in {100.0 * k / len(digits.val) for k in range(len(digits.val) + 1)} for v in r.val_acc)  # a share of the images


def test_without_test_split_no_test_accuracy(digits):
    r, _ = train_student(method="nokd", config={"strength": 0.0}, splits=digits.without_test(), student_arch="resnet8",
               teacher=None, recipe=RECIPE, seed=0)
    assert r.test_acc == [] and math.isnan(r.test_last)


def test_non_finite_loss_fails_the_run_with_its_reason(digits):
    blown = Recipe(epochs=3, batch_size=128, lr=1e12, nesterov=False, momentum=0.0)
    r, _ = train_student(method="nokd", config={"strength": 0.0}, splits=digits, student_arch="resnet8", teacher=None, recipe=blown, seed=0)
    assert r.status == "failed"
    assert "non-finite" in r.reason


def test_teacher_is_frozen(digits):
    teacher = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    r, _ = train_student(method="kd", config={"strength": 0.3, "temperature": 4.0, "alpha": 0.9}, splits=digits,
               student_arch="resnet8", teacher=teacher, recipe=Recipe(epochs=1, batch_size=128), seed=0)
    assert r.status == "ok"
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
