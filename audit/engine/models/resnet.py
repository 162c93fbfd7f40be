"""CIFAR ResNets (He et al. 2016) as in the CRD benchmark: resnet8..110, resnet8x4, resnet32x4; and
resnet8_half, resnet8 at half its width, the default student on digits (README, "The default audit")."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import Features, KDModel, register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the pre-activation sum; the caller applies the ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)


class CifarResNet(KDModel):
    def __init__(self, depth: int, widths: tuple[int, int, int, int], in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("CIFAR ResNet depth must be 6n + 2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.stages = nn.ModuleList()
        cin = widths[0]
        for i, cout in enumerate(widths[1:]):
            blocks = [BasicBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
            self.stages.append(nn.ModuleList(blocks))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        pre_x = self.bn1(self.conv1(x))
        x = F.relu(pre_x)
        pre, post = [pre_x], [x]
        for stage in self.stages:
            for block in stage:
                p = block(x)
                x = F.relu(p)
            pre.append(p)
            post.append(x)
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(pooled), Features(pre, post, pooled)

    def bn_before_relu(self) -> list[nn.Module]:
        return [stage[-1].bn2 for stage in self.stages]


def _make(depth: int, widths: tuple[int, int, int, int]):
    def factory(in_channels: int, num_classes: int) -> CifarResNet:
        return CifarResNet(depth, widths, in_channels, num_classes)

    return factory


for _depth in (8, 14, 20, 26, 32, 44, 56, 110):
    register_model(f"resnet{_depth}")(_make(_depth, (16, 16, 32, 64)))
for _depth in (8, 32):
    register_model(f"resnet{_depth}x4")(_make(_depth, (32, 64, 128, 256)))
# Narrow enough to fall several points behind resnet20 on digits in the default 4 epochs (8 channels is
# also the narrowest oneDNN trains reliably in channels-last on our CPU: 4 crashed it).
register_model("resnet8_half")(_make(8, (8, 8, 16, 32)))
