"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is faster, and immune to a busy CPU (OpenMP barriers
    between two threads on an oversubscribed 2-core machine cost seconds per step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
