"""Wide ResNets (Zagoruyko & Komodakis 2016) as in the CRD benchmark: pre-activation blocks,
widths 16, 16k, 32k, 64k, depth 6n + 4.

The activation-boundary paper's code (used by the seed survey) builds the same network, so
``survey.py`` reuses ``WideResNet`` under its own names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import Features, KDModel, register_model


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        # As in the reference code, a block that changes width feeds the *activated* input to
        # its 1x1 shortcut; a block that keeps width adds the raw input.
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor, act: torch.Tensor | None = None) -> torch.Tensor:
        """``act`` is ``relu(bn1(x))`` when the caller already computed it (for the features),
        so ``bn1`` runs once per step and its running statistics update once."""
        if act is None:
            act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(KDModel):
    def __init__(self, depth: int, widen: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("Wide ResNet depth must be 6n + 4")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.stages = nn.ModuleList()
        cin = widths[0]
        for i, cout in enumerate(widths[1:]):
            blocks = [PreActBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
            self.stages.append(nn.ModuleList(blocks))
            cin = cout
        self.bn1 = nn.BatchNorm2d(cin)  # the final pre-activation before pooling
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def bn_before_relu(self) -> list[nn.Module]:
        # A stage's output is first normalised by the next stage's first block (or the final
        # bn1): that BN produces its pre feature, as in mdistiller's get_bn_before_relu.
        return [stage[0].bn1 for stage in self.stages[1:]] + [self.bn1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        x = self.conv1(x)
        pre, post = [x], [x]  # the stem is a bare convolution
        bns = self.bn_before_relu()
        act: torch.Tensor | None = None
        for stage, bn in zip(self.stages, bns):
            for j, block in enumerate(stage):
                x = block(x, act if j == 0 else None)
            p = bn(x)
            act = F.relu(p)
            pre.append(p)
            post.append(act)
        pooled = torch.flatten(F.adaptive_avg_pool2d(act, 1), 1)
        return self.fc(pooled), Features(pre, post, pooled)


def _make(depth: int, widen: int):
    def factory(in_channels: int, num_classes: int) -> WideResNet:
        return WideResNet(depth, widen, in_channels, num_classes)

    return factory


for _depth, _widen in ((16, 1), (16, 2), (16, 4), (22, 4), (28, 4), (40, 1), (40, 2)):
    register_model(f"wrn_{_depth}_{_widen}")(_make(_depth, _widen))
