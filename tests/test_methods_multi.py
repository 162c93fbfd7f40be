"""Multi-teacher (mkd) and multi-stage (takd) methods: golden values, frozen teachers, compute accounting."""
import math

import pytest
import torch

from audit.engine.models import build_model
from audit.engine.train import Recipe, train_student
from methods.base import Context, FeatureShapes
from methods.mkd import MKD


def _model(arch, seed):
    torch.manual_seed(seed)
    return build_model(arch, in_channels=1, num_classes=10).eval()


def _kl_by_hand(s, t, T):
    ps = [math.exp(v / T) for v in s]
    pt = [math.exp(v / T) for v in t]
    ps = [v / sum(ps) for v in ps]
    pt = [v / sum(pt) for v in pt]
    return sum(b * math.log(b / a) for a, b in zip(ps, pt)) * T * T


def test_mkd_is_the_mean_of_the_teachers_kd_terms(digits):
    student, t1, t2 = _model("resnet8", 0), _model("resnet14", 1), _model("resnet8", 2)
    x, y = digits.train.x[:1], digits.train.y[:1]
    ctx = Context(FeatureShapes.of(student, digits.train.x), FeatureShapes.of(t1, digits.train.x), 10, extra_teachers=[t2])
    m = MKD(student, t1, {"alpha": 0.4, "temperature": 3.0}, ctx).train()
    logits, losses = m.forward_train(x, y, torch.arange(1))
    with torch.no_grad():
        s = logits[0].tolist()
        a, b = t1(x)[0][0].tolist(), t2(x)[0][0].tolist()
    expected = 0.4 * (_kl_by_hand(s, a, 3.0) + _kl_by_hand(s, b, 3.0)) / 2
    assert abs(losses["kd"].item() - expected) < 1e-5
    assert not t1.training and not t2.training


@pytest.mark.parametrize("paper_protocol, expected_epochs", [(False, 4), (True, 8)])
def test_takd_assistant_stage_inside_or_outside_the_budget(digits, paper_protocol, expected_epochs):
    teacher = _model("resnet20", 3)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    r, _ = train_student(method="takd", config={"temperature": 4.0, "alpha": 0.5, "strength": 0.0}, splits=digits,
               student_arch="resnet8", teacher=teacher, options={"assistant": "resnet14"}, recipe=Recipe(epochs=4, batch_size=256),
               seed=0, paper_protocol=paper_protocol)
    assert r.status == "ok", r.reason
    assert r.epochs == expected_epochs and r.pretrain_epochs == (4 if paper_protocol else 2)
    assert len(r.val_acc) == (4 if paper_protocol else 2)  # only the student's stage is evaluated
    assert r.images == expected_epochs * len(digits.train)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_mkd_trains_with_two_teachers(digits):
    teacher, extras = _model("resnet14", 1), [_model("wrn_16_1", 2), _model("wrn_16_1", 3)]
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in (teacher, *extras)]
    losses = []
    for extra in extras:
        r, _ = train_student(method="mkd", config={"temperature": 4.0, "alpha": 0.5, "strength": 0.2}, splits=digits,
                             student_arch="resnet8", teacher=teacher, extra_teachers=[extra],
                             recipe=Recipe(epochs=1, batch_size=256), seed=0)
        assert r.status == "ok", r.reason
        assert r.epochs == 1 and r.images == len(digits.train)
        losses.append(r.train_loss)
    assert losses[0] != losses[1]  # the extra teacher is part of the loss: another one trains the student otherwise
    for t, b in zip((teacher, *extras), before):
        assert all(torch.equal(v, b[k]) for k, v in t.state_dict().items())  # every teacher stays frozen


def test_study_picks_an_assistant_between_teacher_and_student():
    from audit.study import Study

    assert Study(name="a", methods=["takd"], teacher="resnet32", student="resnet8").options["takd"]["assistant"] == "resnet20"
    assert Study(name="a", methods=["mkd"]).options["mkd"]["extra_teachers"] == ["wrn_16_2"]
    assert Study(name="a", methods=["mkd"]).extra_teachers() == ["wrn_16_2"]
