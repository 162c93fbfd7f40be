"""VGG with batch norm as in the CRD benchmark: five conv blocks, no FC layers but the classifier.

Block 0 is the stem; blocks 1-4 are the stages. Max-pooling uses ``ceil_mode`` so a 1x1 map
stays 1x1: an 8x8 input reaches 1x1 at stage 3 instead of vanishing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.engine.models import Features, KDModel, register_model

# Channels of each conv in blocks 0..4.
CONFIGS: dict[str, list[list[int]]] = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def _conv_block(cin: int, widths: list[int]) -> nn.Sequential:
    """conv-BN-ReLU repeated, ending on the last BN: the caller applies the final ReLU."""
    layers: list[nn.Module] = []
    for cout in widths:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers[:-1])


class VGG(KDModel):
    def __init__(self, cfg: list[list[int]], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = _conv_block(in_channels, cfg[0])
        self.stages = nn.ModuleList(_conv_block(a[-1], b) for a, b in zip(cfg, cfg[1:]))
        self.fc = nn.Linear(cfg[-1][-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        p = self.stem(x)
        x = F.relu(p)
        pre, post = [p], [x]
        for i, stage in enumerate(self.stages):
            # The reference pools before stages 1-3 only (the 4th pool is for 64x64 inputs).
            if i < 3:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            p = stage(x)
            x = F.relu(p)
            pre.append(p)
            post.append(x)
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(pooled), Features(pre, post, pooled)

    def bn_before_relu(self) -> list[nn.Module]:
        return [stage[-1] for stage in self.stages]


def _make(cfg: list[list[int]]):
    def factory(in_channels: int, num_classes: int) -> VGG:
        return VGG(cfg, in_channels, num_classes)

    return factory


for _name, _cfg in CONFIGS.items():
    register_model(_name)(_make(_cfg))
