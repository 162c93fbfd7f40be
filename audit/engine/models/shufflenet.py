"""ShuffleNet V1 (g = 3) and V2 (1x) as in the CRD benchmark (RepDistiller's ShuffleV1/ShuffleV2).

Both have a 1x1 stem and three stages that each halve the map with padded stride-2 layers, so
32x32 inputs give 16, 8, 4 and 8x8 inputs give 4, 2, 1; the pooling is adaptive.
A stage's pre feature is a sum or a concatenation, never a BN output, so ``bn_before_relu``
gives ``None`` for every stage (the benchmark does not support OFD on these nets either).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import Features, KDModel, register_model


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleV1Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = cout // 4
        # The 24-channel stem output is too narrow to split into groups.
        self.g1 = 1 if cin == 24 else groups
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=self.g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the pre-activation output; the caller applies the ReLU."""
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.g1)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:  # downsampling: concatenate with the pooled input
            return torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1)
        return out + x


class ShuffleNetV1(KDModel):
    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], groups: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.stages = nn.ModuleList()
        cin = 24
        for cout, n in zip(widths, depths):
            # The first block's branch makes only the channels the concatenation lacks.
            blocks = [ShuffleV1Block(cin if j == 0 else cout, cout - cin if j == 0 else cout, 2 if j == 0 else 1, groups) for j in range(n)]
            self.stages.append(nn.ModuleList(blocks))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)

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

    def bn_before_relu(self) -> list[nn.Module | None]:
        return [None] * len(self.stages)


class ShuffleV2Block(nn.Module):
    """Keeps half the channels, transforms the other half, concatenates and shuffles."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels // 2
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (pre, post): the block output before and after its last ReLU.

        The reference returns ``pre`` unshuffled; we shuffle it too so pre and post line up
        channel by channel (post = pre with the ReLU on the transformed half).
        """
        keep, x2 = x.chunk(2, 1)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x2)))))
        p = self.bn3(self.conv3(out))
        pre = channel_shuffle(torch.cat([keep, p], 1), 2)
        post = channel_shuffle(torch.cat([keep, F.relu(p)], 1), 2)
        return pre, post


class ShuffleV2Down(nn.Module):
    """Two stride-2 branches, each making half the output channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.left = nn.Sequential(
            nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
        )
        self.right = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
            nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(KDModel):
    def __init__(self, widths: tuple[int, int, int, int], depths: tuple[int, int, int], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.stages = nn.ModuleList()
        cin = 24
        for cout, n in zip(widths[:3], depths):
            self.stages.append(nn.ModuleList([ShuffleV2Down(cin, cout)] + [ShuffleV2Block(cout) for _ in range(n)]))
            cin = cout
        self.conv2 = nn.Conv2d(cin, widths[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        p = self.bn1(self.conv1(x))
        x = F.relu(p)
        pre, post = [p], [x]
        for stage in self.stages:
            x = stage[0](x)
            for block in stage[1:]:
                p, x = block(x)
            pre.append(p)
            post.append(x)
        x = F.relu(self.bn2(self.conv2(x)))
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(pooled), Features(pre, post, pooled)

    def bn_before_relu(self) -> list[nn.Module | None]:
        return [None] * len(self.stages)


@register_model("shufflenet_v1")
def shufflenet_v1(in_channels: int, num_classes: int) -> ShuffleNetV1:
    return ShuffleNetV1((240, 480, 960), (4, 8, 4), 3, in_channels, num_classes)


@register_model("shufflenet_v2")
def shufflenet_v2(in_channels: int, num_classes: int) -> ShuffleNetV2:
    return ShuffleNetV2((116, 232, 464, 1024), (3, 7, 3), in_channels, num_classes)
