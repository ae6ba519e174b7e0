"""Shared test settings: float64 references, hypothesis profile, the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("mogsim", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mogsim"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The test tensors are tiny: one intra-op thread avoids OpenMP spin-waits, which on a busy 2-core machine made
    small operations 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_data_dir() -> Path:
    """``../shared/data`` beside the clone (CI layout), or ``$MOGSIM_SHARED_DATA``."""
    env = os.environ.get("MOGSIM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; this machine has none")
    return torch.device("cuda")
