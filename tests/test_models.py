"""The model zoo's contract: shapes, features, stage batch-norms, parameter counts, gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.engine.models import KDModel, build_model, count_parameters, model_names

torch.set_num_threads(1)

NAMES = model_names()
# (in_channels, side): the digits default and CIFAR, the two ends of the supported range.
INPUTS = [(1, 8), (3, 32)]


def _run(name: str, channels: int, side: int, num_classes: int = 10):
    torch.manual_seed(0)
    model = build_model(name, in_channels=channels, num_classes=num_classes)
    logits, feats = model(torch.randn(2, channels, side, side))
    return model, logits, feats


@pytest.mark.parametrize("channels,side", INPUTS, ids=[f"{c}x{s}x{s}" for c, s in INPUTS])
@pytest.mark.parametrize("name", NAMES)
def test_forward_contract(name: str, channels: int, side: int) -> None:
    model, logits, feats = _run(name, channels, side)
    assert isinstance(model, KDModel)
    assert logits.shape == (2, 10)
    assert len(feats.pre) == len(feats.post) >= 3  # stem + at least two stages
    for p, q in zip(feats.pre, feats.post):
        assert p.dim() == 4 and p.shape == q.shape and p.shape[0] == 2
        assert min(p.shape[2:]) >= 1
    assert feats.pooled.dim() == 2 and feats.pooled.shape[0] == 2
    bns = model.bn_before_relu()
    assert len(bns) == len(feats.pre) - 1
    for bn, p in zip(bns, feats.pre[1:]):
        assert bn is None or (isinstance(bn, nn.BatchNorm2d) and bn.num_features == p.shape[1])


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_gradients(name: str) -> None:
    model, logits, feats = _run(name, 1, 8)
    # Touch the features too, as feature-based methods do.
    loss = logits.logsumexp(1).mean() + sum(p.pow(2).mean() for p in feats.pre) + feats.pooled.mean()
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", ["wrn_16_2", "vgg8", "mobilenetv2", "survey_wrn_10_1"])
def test_stage_batchnorm_produces_pre_feature(name: str) -> None:
    """Where the stage output comes straight from a BN, bn_before_relu must name that BN."""
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, num_classes=10)
    seen: list[torch.Tensor] = []
    for bn in model.bn_before_relu():
        bn.register_forward_hook(lambda _m, _i, out: seen.append(out))
    _, feats = model(torch.randn(2, 3, 32, 32))
    pre = feats.pre[1:]
    if name == "mobilenetv2":  # a residual sum follows the BN in stages 1-3
        pre, seen = pre[-1:], seen[-1:]
    assert len(seen) == len(pre) and all(s is p for s, p in zip(seen, pre))


# The seed survey's own counts on CIFAR-10 (its model factory and notes).
SURVEY_COUNTS = {
    "survey_resnet8": 89_322,
    "survey_resnet20": 283_754,
    "survey_resnet26": 380_970,
    "survey_resnet18": 11_173_962,
    "survey_wrn_10_1": 77_850,
    "survey_wrn_16_4": 2_748_890,
    "survey_wrn_22_4": 4_298_970,
    "survey_wrn_40_1": 563_930,
    # The survey's VGGs list the same layers as the CRD ones (conv+BN blocks, one linear layer).
    "vgg11": 9_231_114,
    "vgg13": 9_416_010,
    "vgg16": 14_728_266,
    "vgg19": 20_040_522,
}
# CIFAR-100 counts of the CRD benchmark's code (RepDistiller), checked by building both.
CRD_COUNTS = {
    "wrn_40_2": 2_255_156,
    "wrn_16_1": 180_916,
    "vgg8": 3_965_028,
    "vgg13": 9_462_180,
    "mobilenetv2": 812_836,
    "shufflenet_v1": 949_258,
    "shufflenet_v2": 1_355_528,
    "resnet50": 23_705_252,  # RepDistiller's ResNet50 (models/resnetv2.py), one of the released teachers
}


@pytest.mark.parametrize("name,expected", sorted(SURVEY_COUNTS.items()))
def test_parameter_counts_cifar10(name: str, expected: int) -> None:
    assert count_parameters(build_model(name, in_channels=3, num_classes=10)) == expected


@pytest.mark.parametrize("name,expected", sorted(CRD_COUNTS.items()))
def test_parameter_counts_cifar100(name: str, expected: int) -> None:
    assert count_parameters(build_model(name, in_channels=3, num_classes=100)) == expected


def test_survey_resnet_pools_to_256_on_both_sizes() -> None:
    for channels, side in INPUTS:
        _, _, feats = _run("survey_resnet8", channels, side)
        assert feats.pooled.shape == (2, 256)


@pytest.mark.parametrize("name", ["vgg8", "mobilenetv2", "shufflenet_v1", "shufflenet_v2", "survey_resnet18"])
def test_odd_sizes_work(name: str) -> None:
    """MNIST's 28x28 hits odd maps (7, then 4 or 3): pooling must not shrink them to nothing."""
    for side in (28, 12):
        _, logits, _ = _run(name, 1, side)
        assert logits.shape == (2, 10)
