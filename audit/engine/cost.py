"""What one training image costs on this machine, measured: the basis of the compute estimate a
study prints at start (and of the refusal of a study that would run longer than a stated limit).

A few SGD steps of the student on real batches of the study's data, with the teacher's forward
pass when the study distils (the classical KD step: cross-entropy plus the KL term), on the
device, thread count and memory layout its trials use; the median step over the batch size.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from audit.engine.data import Splits
from audit.engine.models import build_model
from audit.engine.train import Accel


def seconds_per_image(splits: Splits, student: str, teacher: str | None, *, batch_size: int, threads: int,
                      device: torch.device, accel: Accel = Accel(), steps: int = 3) -> float:
    """Median wall time of one training step of ``student`` (distilled from ``teacher`` when given)
    divided by the images in the step."""
    info, before = splits.info, torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    accel = accel.on(device)
    try:
        n = min(batch_size, len(splits.train))
        x, y = splits.train.x[:n].to(device), splits.train.y[:n].to(device)
        torch.manual_seed(0)
        net = accel.prepare(build_model(student, in_channels=info.shape[0], num_classes=info.num_classes).to(device))
        teach = None
        if teacher is not None:
            teach = accel.prepare(build_model(teacher, in_channels=info.shape[0], num_classes=info.num_classes).to(device)).eval()
        if accel.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            with accel.autocast():
                logits = net(x)[0]
                loss = F.cross_entropy(logits, y)
                if teach is not None:
                    with torch.no_grad():
                        target = teach(x)[0]
                    loss = loss + F.kl_div(F.log_softmax(logits / 4, 1), F.softmax(target / 4, 1), reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        step()  # warm-up: allocations, oneDNN's kernel choice
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) / n
    finally:
        torch.set_num_threads(before)
