"""The machine: what software and hardware ran a study (``machine_facts``, which the pipeline
stores as ``machine.json`` in the study folder when a study starts) and what the report can say
about the machine writing it, without importing torch."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from pathlib import Path

MACHINE_JSON = "machine.json"
PACKAGES = ("torch", "optuna", "ray", "scipy", "numpy", "pandas", "matplotlib", "jinja2", "scikit-learn")
REPO_ROOT = Path(__file__).resolve().parents[2]


def version(pkg: str) -> str:
    """An installed distribution's version, read from its metadata (the package is not imported)."""
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit() -> str:
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "not available (not a git checkout)"


def gpus_without_torch() -> list[str]:
    """The NVIDIA GPUs ``nvidia-smi`` lists (none where it is missing or fails)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _gpus_with_torch() -> tuple[list[str], str | None]:
    """The GPUs torch sees (CUDA_VISIBLE_DEVICES applies) and its CUDA version."""
    try:
        # Deferred: only a caller that asks for torch's view of the GPUs (the pipeline, which has
        # torch loaded anyway) pays for importing it; the report never does.
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], torch.version.cuda
        return [], torch.version.cuda
    except Exception:  # noqa: BLE001 - a broken driver is "no GPU" for the record
        return [], None


def machine_facts(with_gpu: bool) -> dict:
    """The software and hardware of this machine, as JSON-ready values.

    ``with_gpu`` asks torch which GPUs it sees (importing torch); without it the GPUs are those
    ``nvidia-smi`` lists, and torch is not imported."""
    gpus, cuda = _gpus_with_torch() if with_gpu else (gpus_without_torch(), None)
    facts = {
        "host": socket.gethostname(),
        "kd-audit": version("kd-audit"),
        "git_commit": git_commit(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpus": gpus,
        "gpus_from": "torch" if with_gpu else "nvidia-smi",
        "packages": {p: version(p) for p in PACKAGES},
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if cuda is not None:
        facts["cuda"] = cuda
    return facts


def read_machine(study_dir: Path) -> tuple[dict | None, str | None]:
    """(facts, problem) of the study folder's ``machine.json``: ``(None, None)`` for a folder made
    before it was recorded, ``(None, why)`` for one that cannot be read."""
    path = Path(study_dir) / MACHINE_JSON
    if not path.is_file():
        return None, None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{MACHINE_JSON} could not be read ({type(exc).__name__})"
    if not isinstance(value, dict):
        return None, f"{MACHINE_JSON} holds no object"
    return value, None
