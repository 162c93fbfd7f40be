"""The training FLOPs of a method on a pair, per image and stage, measured without training.

The count is torch's ``FlopCounterMode`` on one real training step (forward, backward, every
teacher included), as ``audit.engine.train`` counts the runs it trains: the method's extra stages
(AB's and FSP's initialisation, FT's paraphraser, TAKD's assistant) are each measured on their own
step. The step runs on the ``meta`` device, which computes shapes and no numbers, so even a
ResNet50 teacher costs about a second; a step that needs real values (an op without a meta kernel,
a random draw on the run's generator) is measured on the CPU instead, at the same batch size.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from audit.engine.datasets import DatasetInfo
from audit.engine.models import build_model
from audit.errors import AuditError
from methods import get_method
from methods.base import Context, FeatureShapes


@dataclass(frozen=True)
class StageCost:
    stage: str  # "main", or the name of an extra stage run before it
    epochs: int
    flops_per_image: float


def _step_flops(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    module.train()
    with FlopCounterMode(display=False) as counter:
        _, losses = module.forward_train(x, y, torch.arange(len(x), device=x.device))
        sum(losses.values()).backward()
    return counter.get_total_flops() / len(x)


def _measure(method: str, config: dict, options: dict, teacher: str | None, student: str, info: DatasetInfo, *,
             batch_size: int, epochs: int, paper_protocol: bool, num_train: int, device: torch.device) -> list[StageCost]:
    cls = get_method(method)
    c, k = info.shape[0], info.num_classes
    torch.manual_seed(0)
    with torch.device(device):
        net = build_model(student, in_channels=c, num_classes=k)
        frozen = build_model(teacher, in_channels=c, num_classes=k).eval() if cls.needs_teacher and teacher else None
        extra = [build_model(a, in_channels=c, num_classes=k).eval() for a in cls.extra_teachers(options)] if frozen else []
        x = torch.randn(batch_size, *info.shape)
        y = torch.randint(0, k, (batch_size,))
    g = torch.Generator(device=device).manual_seed(0) if device.type != "meta" else None
    ctx = Context(
        student=FeatureShapes.of(net, x[:2]), teacher=FeatureShapes.of(frozen, x[:2]) if frozen is not None else None,
        num_train=num_train, in_channels=c, epochs=epochs, paper_protocol=paper_protocol, options=dict(options),
        extra_teachers=extra, generator=g, hflip=info.hflip, info=info,
    )
    with torch.device(device):
        module = cls(net, frozen, dict(config), ctx)
    stages: list[StageCost] = []

    def fit(stage: nn.Module, n: int) -> None:  # an extra stage: counted on one step, not trained
        stages.append(StageCost(f"{method} stage {len(stages) + 1}", n, _step_flops(stage, x, y)))

    used = module.pretrain(fit, epochs)
    stages.append(StageCost("main", epochs if paper_protocol else epochs - used, _step_flops(module, x, y)))
    return stages


def training_flops(method: str, config: dict, options: dict, teacher: str | None, student: str, info: DatasetInfo, *,
                   batch_size: int, epochs: int, paper_protocol: bool = False, num_train: int = 50_000) -> list[StageCost]:
    """Each stage of training ``student`` with ``method``: its epochs and FLOPs per training image."""
    try:
        return _measure(method, config, options, teacher, student, info, batch_size=batch_size, epochs=epochs,
                        paper_protocol=paper_protocol, num_train=num_train, device=torch.device("meta"))
    except (NotImplementedError, RuntimeError, AuditError, ValueError):
        # A data-dependent op (boolean masks, nonzero) or a random draw that needs real numbers.
        return _measure(method, config, options, teacher, student, info, batch_size=batch_size, epochs=epochs,
                        paper_protocol=paper_protocol, num_train=num_train, device=torch.device("cpu"))


class FlopsCache:
    """Measured costs kept in a JSON file by their inputs and torch's version (a plan over many
    claims measures each method and pair once, then never again)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[dict]] = {}
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is measured again, never trusted

    def get(self, **inputs: object) -> list[StageCost]:
        key = json.dumps({**inputs, "torch": torch.__version__}, sort_keys=True, default=str)
        if key not in self.entries:
            info = inputs.pop("info")
            self.entries[key] = [asdict(s) for s in training_flops(info=info, **inputs)]  # type: ignore[arg-type]
            self._save()
        return [StageCost(**s) for s in self.entries[key]]

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs a measurement next time
