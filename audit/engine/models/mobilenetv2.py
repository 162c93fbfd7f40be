"""MobileNetV2 as in the CRD benchmark (RepDistiller's ``mobile_half``: expansion 6, width 0.5).

The strides are the benchmark's (stem 2, then 1, 1, 2, 2, 1, 2, 1): on 32x32 the stages run at
16, 8, 4 and 2 pixels. Every strided layer is a padded 3x3 convolution, which never shrinks a map
below 1x1, so 8x8 inputs work unchanged (stages at 4, 2, 1, 1) and the pooling is adaptive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import Features, KDModel, register_model

# (channels, blocks, first stride) per group, before the width multiplier. The first group
# never expands; the others use the model's expansion.
SETTING = ((16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1))
# The groups whose output is a stage feature (CRD's f1..f4); the others are inner groups.
STAGE_ENDS = (1, 2, 4, 6)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        # The benchmark keeps the 1x1 expansion even when expand == 1; so do we (same weights).
        self.conv = nn.Sequential(
            *_conv_bn_relu(cin, mid, 1, 1),
            *_conv_bn_relu(mid, mid, 3, stride, groups=mid),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),  # linear bottleneck: no activation after it
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(KDModel):
    def __init__(self, expand: int, width: float, in_channels: int, num_classes: int) -> None:
        super().__init__()
        cin = int(32 * width)
        # conv-BN only: forward applies the ReLU so the stem's pre feature stays visible.
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, cin, 3, 2)[:2])
        self.groups = nn.ModuleList()
        for i, (c, n, s) in enumerate(SETTING):
            cout = int(c * width)
            t = expand if i else 1
            blocks = [InvertedResidual(cin if j == 0 else cout, cout, s if j == 0 else 1, t) for j in range(n)]
            self.groups.append(nn.Sequential(*blocks))
            cin = cout
        last = int(1280 * width) if width > 1.0 else 1280
        self.head = nn.Sequential(*_conv_bn_relu(cin, last, 1, 1))
        self.fc = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        p = self.stem(x)
        x = F.relu(p)
        pre, post = [p], [x]
        for i, group in enumerate(self.groups):
            x = group(x)
            if i in STAGE_ENDS:  # a linear bottleneck: no activation, so pre == post
                pre.append(x)
                post.append(x)
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.head(x), 1), 1)
        return self.fc(pooled), Features(pre, post, pooled)

    def bn_before_relu(self) -> list[nn.Module]:
        # The last block of a stage ends on its BN; with a residual sum after it the BN is
        # still what mdistiller returns (its margins are only approximate there).
        return [self.groups[i][-1].conv[-1] for i in STAGE_ENDS]


@register_model("mobilenetv2")
def mobilenetv2(in_channels: int, num_classes: int) -> MobileNetV2:
    return MobileNetV2(6, 0.5, in_channels, num_classes)
