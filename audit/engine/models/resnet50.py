"""The CRD benchmark's CIFAR ResNet50 (RepDistiller ``models/resnetv2.py``, ``ResNet50``): one of
its released teachers.

A 3x3 stride-1 stem of 64 channels (no max-pool), four stages of 3, 4, 6 and 3 bottleneck blocks
(1x1, 3x3 carrying the stride, 1x1 to four times the width; widths 64, 128, 256, 512), a
projection shortcut (1x1 convolution + BN) on the first block of every stage, global average
pooling and a 2048-wide classifier. Layers and forward follow the anchor exactly, so its weights
load through ``audit.engine.checkpoint_keys`` and give its logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import Features, KDModel, register_model

EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = EXPANSION * planes
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the pre-activation sum; the caller applies the ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out)) + self.shortcut(x)


class BottleneckResNet(KDModel):
    def __init__(self, blocks: tuple[int, ...], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stages = nn.ModuleList()
        cin = 64
        for i, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            self.stages.append(nn.ModuleList(Bottleneck(cin if j == 0 else EXPANSION * planes, planes, stride if j == 0 else 1)
                                             for j in range(n)))
            cin = EXPANSION * planes
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        p = self.bn1(self.conv1(x))
        x = F.relu(p)
        pre, post = [p], [x]
        for stage in self.stages:
            for block in stage:
                p = block(x)
                x = F.relu(p)
            pre.append(p)
            post.append(x)
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(pooled), Features(pre, post, pooled)

    def bn_before_relu(self) -> list[nn.Module]:
        return [stage[-1].bn3 for stage in self.stages]


@register_model("resnet50")
def resnet50(in_channels: int, num_classes: int) -> BottleneckResNet:
    return BottleneckResNet((3, 4, 6, 3), in_channels, num_classes)
