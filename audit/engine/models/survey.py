"""The seed survey's own architectures (karanchahal/distiller, 2019), under ``survey_*`` names.

They differ from the CRD benchmark's nets of the same depth, so the survey's numbers are only
comparable on these:

- ``survey_resnet8..56`` (its ResNetSmall): [n, n, n] basic blocks of widths 16/32/64 after a
  64-wide stem, no ReLU after a residual sum (ReLU only between stages), and a 2x2 average
  pool into a 256-d classifier input. The code pools the 8x8 map with ``avg_pool2d(4)``;
  pooling adaptively to 2x2 is the same on 32x32 and still works on 8x8 inputs.
- ``survey_resnet18``: the common CIFAR ResNet18 (widths 64-512) with the same ReLU placement.
- ``survey_wrn_*``: the activation-boundary paper's Wide ResNets, which are the same network
  as the CRD benchmark's (``wrn.py``).

PyTorch's default initialisation is kept for the ResNets because the survey's code keeps it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import Features, KDModel, register_model
from audit.engine.models.resnet import BasicBlock
from audit.engine.models.wrn import WideResNet


class SurveyResNet(KDModel):
    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], stem: int, pool: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.stages = nn.ModuleList()
        cin = stem
        for i, (n, cout) in enumerate(zip(blocks, widths)):
            self.stages.append(nn.ModuleList(BasicBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)))
            cin = cout
        self.pool = pool
        self.fc = nn.Linear(cin * pool * pool, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        p = self.bn1(self.conv1(x))
        x = F.relu(p)
        pre, post = [p], [x]
        for stage in self.stages:
            for block in stage:
                x = block(x)  # BasicBlock returns the sum un-activated; the survey adds no ReLU here
            pre.append(x)
            x = F.relu(x)
            post.append(x)
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, self.pool), 1)
        return self.fc(pooled), Features(pre, post, pooled)

    def bn_before_relu(self) -> list[nn.Module]:
        return [stage[-1].bn2 for stage in self.stages]


def _small(n: int):
    def factory(in_channels: int, num_classes: int) -> SurveyResNet:
        return SurveyResNet((n, n, n), (16, 32, 64), 64, 2, in_channels, num_classes)

    return factory


def _wrn(depth: int, widen: int):
    def factory(in_channels: int, num_classes: int) -> WideResNet:
        return WideResNet(depth, widen, in_channels, num_classes)

    return factory


for _depth in (8, 14, 20, 26, 32, 44, 56):
    register_model(f"survey_resnet{_depth}")(_small((_depth - 2) // 6))


@register_model("survey_resnet18")
def survey_resnet18(in_channels: int, num_classes: int) -> SurveyResNet:
    return SurveyResNet((2, 2, 2, 2), (64, 128, 256, 512), 64, 1, in_channels, num_classes)


# The WRNs in the survey's model factory.
for _depth, _widen in ((10, 1), (10, 4), (16, 1), (16, 2), (16, 4), (16, 8), (22, 4), (22, 8), (28, 1), (28, 2), (40, 1), (40, 4)):
    register_model(f"survey_wrn_{_depth}_{_widen}")(_wrn(_depth, _widen))
