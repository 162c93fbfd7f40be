"""The anchors' key names mapped onto ours, explicitly, per architecture family.

Our architectures are the anchors' layer for layer (same parameters and buffers in the same
order, the same forward) but name their modules differently (``stages.0`` for ``layer1``,
``fc`` for ``linear``, ...). Each family has an ordered list of rules ``(anchor regex, our
name)``; an anchor key must match exactly one rule, fully, and land on a key our model has,
with the same shape. Anything else is refused with one line naming the first offending key:
an extra key (not part of the architecture), a missing one, a wrong shape. The anchors are
RepDistiller's and mdistiller's CIFAR models (identical names) and the seed survey's
(karanchahal/distiller); tests/test_checkpoint_import.py checks every rule set against the key
lists and shapes of the anchors' published model definitions.

One accepted gap: files saved by PyTorch before 0.4.1 have no ``num_batches_tracked`` buffers.
A file lacking all of them (and nothing else) is accepted and the counters start at 0, as
PyTorch's own loading does for such files; eval-mode outputs never read them.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from audit.engine.models import build_model, model_names
from audit.engine.models.mobilenetv2 import MobileNetV2
from audit.engine.models.resnet import CifarResNet
from audit.engine.models.resnet50 import BottleneckResNet
from audit.engine.models.shufflenet import ShuffleNetV1, ShuffleNetV2
from audit.engine.models.survey import SurveyResNet
from audit.engine.models.vgg import VGG
from audit.engine.models.wrn import WideResNet
from audit.errors import AuditError

BN = "weight|bias|running_mean|running_var|num_batches_tracked"
P = rf"(?P<p>{BN})"  # a parameter or buffer of a convolution, batch norm or linear layer
TRACKED = "num_batches_tracked"


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern
    target: Callable[[dict[str, str]], str]


def _rule(pattern: str, template: str | Callable[[dict[str, str]], str]) -> Rule:
    """``template`` is formatted with the match's groups, plus ``s`` = the anchor's stage number
    (group ``k``, counted from 1) as our stage index (counted from 0)."""
    def target(g: dict[str, str]) -> str:
        g = {**g, "s": str(int(g["k"]) - 1)} if g.get("k") else g
        return template(g) if callable(template) else template.format(**g)

    return Rule(re.compile(pattern), target)


STEM = [_rule(r"conv1\.weight", "conv1.weight"), _rule(rf"bn1\.{P}", "bn1.{p}")]
RULES: dict[type, list[Rule]] = {
    # RepDistiller models/resnet.py (and the survey's older He ResNets, models/resnet_custom.py)
    CifarResNet: [
        *STEM,
        _rule(rf"layer(?P<k>[1-3])\.(?P<j>\d+)\.(?P<m>conv1|bn1|conv2|bn2)\.{P}", "stages.{s}.{j}.{m}.{p}"),
        _rule(rf"layer(?P<k>[1-3])\.(?P<j>\d+)\.downsample\.(?P<i>[01])\.{P}", "stages.{s}.{j}.shortcut.{i}.{p}"),
        _rule(r"fc\.(?P<p>weight|bias)", "fc.{p}"),
    ],
    # RepDistiller models/resnetv2.py ResNet50
    BottleneckResNet: [
        *STEM,
        _rule(rf"layer(?P<k>[1-4])\.(?P<j>\d+)\.(?P<m>conv[123]|bn[123])\.{P}", "stages.{s}.{j}.{m}.{p}"),
        _rule(rf"layer(?P<k>[1-4])\.(?P<j>\d+)\.shortcut\.(?P<i>[01])\.{P}", "stages.{s}.{j}.shortcut.{i}.{p}"),
        _rule(r"linear\.(?P<p>weight|bias)", "fc.{p}"),
    ],
    # the survey's ResNetSmall and ResNet18 (models/cifar10/resnet.py)
    SurveyResNet: [
        *STEM,
        _rule(rf"layer(?P<k>[1-4])\.(?P<j>\d+)\.(?P<m>conv1|bn1|conv2|bn2)\.{P}", "stages.{s}.{j}.{m}.{p}"),
        _rule(rf"layer(?P<k>[1-4])\.(?P<j>\d+)\.shortcut\.(?P<i>[01])\.{P}", "stages.{s}.{j}.shortcut.{i}.{p}"),
        _rule(r"linear\.(?P<p>weight|bias)", "fc.{p}"),
    ],
    # RepDistiller/mdistiller models/wrn.py (block1..3, fc) and the survey's wide_resnet package (layer1..3, linear)
    WideResNet: [
        _rule(r"conv1\.weight", "conv1.weight"),
        _rule(rf"(?:block|layer)(?P<k>[1-3])\.layer\.(?P<j>\d+)\.(?P<m>bn1|conv1|bn2|conv2)\.{P}", "stages.{s}.{j}.{m}.{p}"),
        _rule(r"(?:block|layer)(?P<k>[1-3])\.layer\.(?P<j>\d+)\.convShortcut\.weight", "stages.{s}.{j}.shortcut.weight"),
        _rule(rf"bn1\.{P}", "bn1.{p}"),
        _rule(r"(?:fc|linear)\.(?P<p>weight|bias)", "fc.{p}"),
    ],
    # RepDistiller models/vgg.py (vgg*_bn)
    VGG: [
        _rule(rf"block0\.(?P<i>\d+)\.{P}", "stem.{i}.{p}"),
        _rule(rf"block(?P<k>[1-4])\.(?P<i>\d+)\.{P}", "stages.{s}.{i}.{p}"),
        _rule(r"classifier\.(?P<p>weight|bias)", "fc.{p}"),
    ],
    # RepDistiller models/mobilenetv2.py (mobile_half)
    MobileNetV2: [
        _rule(rf"conv1\.(?P<i>[01])\.{P}", "stem.{i}.{p}"),
        _rule(rf"blocks\.(?P<g>\d+)\.(?P<j>\d+)\.conv\.(?P<i>[0-7])\.{P}", "groups.{g}.{j}.conv.{i}.{p}"),
        _rule(rf"conv2\.(?P<i>[01])\.{P}", "head.{i}.{p}"),
        _rule(r"classifier\.0\.(?P<p>weight|bias)", "fc.{p}"),
    ],
    # RepDistiller models/ShuffleNetv1.py
    ShuffleNetV1: [
        *STEM,
        _rule(rf"layer(?P<k>[1-3])\.(?P<j>\d+)\.(?P<m>conv[123]|bn[123])\.{P}", "stages.{s}.{j}.{m}.{p}"),
        _rule(r"linear\.(?P<p>weight|bias)", "fc.{p}"),
    ],
    # RepDistiller models/ShuffleNetv2.py: the down-sampling block's two branches are Sequentials in ours
    ShuffleNetV2: [
        *STEM,
        _rule(rf"layer(?P<k>[1-3])\.0\.(?P<m>conv[1-5]|bn[1-5])\.{P}",
              lambda g: f"stages.{g['s']}.0.{_SHUFFLE_DOWN[g['m']]}.{g['p']}"),
        _rule(rf"layer(?P<k>[1-3])\.(?P<j>[1-9]\d*)\.(?P<m>conv[123]|bn[123])\.{P}", "stages.{s}.{j}.{m}.{p}"),
        _rule(r"conv2\.weight", "conv2.weight"),
        _rule(rf"bn2\.{P}", "bn2.{p}"),
        _rule(r"linear\.(?P<p>weight|bias)", "fc.{p}"),
    ],
}
_SHUFFLE_DOWN = {"conv1": "left.0", "bn1": "left.1", "conv2": "left.2", "bn2": "left.3", "conv3": "right.0",
                 "bn3": "right.1", "conv4": "right.3", "bn4": "right.4", "conv5": "right.5", "bn5": "right.6"}


class KeyMismatch(AuditError):
    """A checkpoint that does not fit the architecture; the message names the first offending key."""


def rules_for(model: nn.Module) -> list[Rule]:
    for cls, rules in RULES.items():
        if type(model) is cls:
            return rules
    raise AuditError(f"no checkpoint key mapping for {type(model).__name__}")


def our_key(rules: list[Rule], key: str) -> str | None:
    """Our name for the anchor key ``key``, or ``None`` when no rule takes it."""
    hits = [(r, m) for r in rules if (m := r.pattern.fullmatch(key))]
    if len(hits) > 1:  # a broken rule set, not a bad file
        raise RuntimeError(f"anchor key {key!r} matches {len(hits)} rules")
    return hits[0][0].target(hits[0][1].groupdict()) if hits else None


def to_ours(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` (anchor names) renamed onto ``model``'s keys, every key and shape checked.

    Returns the renamed state and notes on what was filled in (only the pre-0.4.1 counters).
    """
    ours = model.state_dict()
    rules = rules_for(model)
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        target = our_key(rules, key)
        if target is None or target not in ours:
            raise KeyMismatch(f"the file has {key!r}, which is no part of {arch}")
        if target in mapped:
            raise KeyMismatch(f"the file has two tensors for {arch}'s {target!r} (the second is {key!r})")
        want = tuple(ours[target].shape)
        if tuple(tensor.shape) != want:
            raise KeyMismatch(f"{key!r} has shape {list(tensor.shape)}, {arch} expects {list(want)}{_classes_hint(target, tensor, want)}")
        mapped[target] = tensor
    missing = [k for k in ours if k not in mapped]
    notes = []
    if missing and all(k.endswith(TRACKED) for k in missing) and not any(k.endswith(TRACKED) for k in mapped):
        for k in missing:
            mapped[k] = torch.zeros_like(ours[k])
        notes.append(f"no {TRACKED} buffers (saved by PyTorch < 0.4.1): set to 0")
    elif missing:
        raise KeyMismatch(f"the file has no tensor for {arch}'s {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return {k: mapped[k] for k in ours}, notes


def _classes_hint(target: str, tensor: torch.Tensor, want: tuple[int, ...]) -> str:
    if target.startswith("fc.") and tensor.dim() >= 1 and tuple(tensor.shape[1:]) == want[1:]:
        return f" (a checkpoint for {tensor.shape[0]} classes; this data set has {want[0]})"
    return ""


def fitting_architectures(state: dict[str, torch.Tensor], *, in_channels: int, num_classes: int) -> list[str]:
    """The architectures whose keys and shapes ``state`` fits exactly (built on the meta device: no
    memory, no initialisation cost), to tell a user which ``--arch`` a checkpoint is for."""
    fits = []
    for name in model_names():
        with torch.device("meta"):
            model = build_model(name, in_channels=in_channels, num_classes=num_classes)
        try:
            to_ours(model, state, name)
        except AuditError:
            continue
        fits.append(name)
    return fits
