"""RNG streams derived from a run's seed alone (common random numbers across roles)."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named stream ("init", "order", "augment", …) of run seed ``seed``."""
    h = hashlib.sha256(f"kdfair/{seed}/{stream}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for one stream; draws are made on the CPU so they match on every device."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))
