"""Shared fixtures: the digits splits, one teacher cache and one Ray instance per test session."""
from __future__ import annotations

import os

# As `audit` does before torch loads OpenMP (audit/__init__.py): idle OpenMP threads sleep instead of
# spinning. Trials run in this process use several threads; spinning ones made them many times
# slower on the shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from audit.engine.data import load_splits

    return load_splits("digits", split_seed=0)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory):
    """A teacher cache shared by the whole session (every xdist worker's), so each teacher is trained
    once: a worker that needs one another is training waits for it (``get_teacher``'s lock)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "teacher_cache"  # the workers' common base folder
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("teacher_cache")


@pytest.fixture(scope="session")
def ray_session():
    """A Ray instance of the session's own, as `audit run` starts one: never a cluster that an
    earlier Ray left an address of on this machine (Ray's ``ray_current_cluster`` file)."""
    import ray

    from audit.search.backend import start_local_ray

    if not ray.is_initialized():
        start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()
