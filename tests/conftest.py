"""Shared test fixtures."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one test process per core: one torch thread each, and the same for the
    # commands they start, or the processes' OpenMP threads fight over the cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is faster, and immune to a busy CPU (OpenMP barriers
    between two threads on an oversubscribed 2-core machine cost seconds per step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
