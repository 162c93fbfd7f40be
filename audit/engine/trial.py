"""One run, a search trial or a confirmation run alike, the same function under every backend.

``run_trial`` rebuilds the teachers from their weights, trains the student with the method and
config, and returns a flat record (what ``trials.jsonl`` stores). It is handed the data it may
see: search trials get splits without the test set.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from audit.engine.data import Splits
from audit.engine.models import build_model
from audit.engine.train import Accel, Recipe, train_student
from methods import get_method


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs besides its config, data and teacher weights (small, picklable)."""

    method: str
    student: str
    teacher: str
    recipe: Recipe
    seed: int
    threads: int = 1
    paper_protocol: bool = False
    budget_hash: str = ""
    accel: Accel = Accel()  # speed settings (not budget); the ones that act on the device are recorded
    options: dict = field(default_factory=dict)  # the method's own study options, passed through unopened


def pick_device(gpus: float) -> torch.device:
    return torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")


def run_trial(
    config: dict,
    spec: RunSpec,
    splits: Splits,
    teacher_states: dict[str, dict[str, torch.Tensor]] | None,
    on_epoch: Callable[[int, dict], None] | None = None,
    device: torch.device | None = None,
) -> dict:
    torch.set_num_threads(max(1, spec.threads))
    device = device or torch.device("cpu")
    splits = splits.to(device)
    info = splits.info

    def rebuild(arch: str) -> torch.nn.Module:
        if not teacher_states or arch not in teacher_states:
            raise ValueError(f"method {spec.method} needs the weights of teacher {arch}")
        model = build_model(arch, in_channels=info.shape[0], num_classes=info.num_classes)
        model.load_state_dict(teacher_states[arch])
        return model.to(device).eval()

    cls = get_method(spec.method)
    result, _ = train_student(
        method=spec.method, config=config, splits=splits, student_arch=spec.student,
        teacher=rebuild(spec.teacher) if cls.needs_teacher else None,
        extra_teachers=[rebuild(a) for a in cls.extra_teachers(spec.options)] if cls.needs_teacher else [],
        options=spec.options, recipe=spec.recipe, seed=spec.seed, on_epoch=on_epoch,
        paper_protocol=spec.paper_protocol, accel=spec.accel,
    )
    # No best epoch on validation without a validation split (NaN accuracies).
    val = torch.tensor(result.val_acc, dtype=torch.float64)
    best_epoch = int(val.argmax()) + 1 if len(val) and not val.isnan().any() else None
    return {
        "method": spec.method,
        "seed": spec.seed,
        "config": dict(config),
        "status": result.status,
        "reason": result.reason,
        "val_acc": result.val_last,
        "val_nll": result.val_nll[-1] if result.val_nll else None,
        "val_acc_last": result.val_last,
        "val_acc_best": result.val_best,
        "test_acc_last": result.test_last if result.test_acc else None,
        "test_acc_best": result.test_best if result.test_acc else None,
        "best_epoch": best_epoch,
        "epochs": result.epochs,
        "pretrain_epochs": result.pretrain_epochs,
        "steps": result.steps,
        "images": result.images,
        "flops": result.flops,
        "wall_s": result.wall_s,
        "val_curve": result.val_acc,
        "val_nll_curve": result.val_nll,
        "test_curve": result.test_acc,
        "budget_hash": spec.budget_hash,
        "accel": spec.accel.on(device).label(),
    }
