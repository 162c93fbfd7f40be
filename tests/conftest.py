"""Shared fixtures: the digits splits, one teacher cache and one Ray instance per test session."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from audit.engine.data import load_splits

    return load_splits("digits", split_seed=0)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory):
    """A teacher cache shared by the whole session, so each teacher is trained once."""
    return tmp_path_factory.mktemp("teacher_cache")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
