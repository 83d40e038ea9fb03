"""Splitting a phase's bundles into jobs: at most so many runs per SLURM job, or about one part per
local worker, a seed's runs kept together."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Run = TypeVar("Run")  # a RunSpec, or anything else a bundle holds


def split_bundles(bundles: list[list[Run]], per_job: int | None,
                  seed_of: Callable[[Run], int] | None = None) -> list[list[Run]]:
    """Each bundle as jobs of at most ``per_job`` runs, runs of one seed kept together.

    A run's result depends on its spec alone, never on what it trains with, so any split gives
    the same predictions; keeping a seed's runs together shares its teacher's work.
    """
    if not per_job:
        return [list(b) for b in bundles if b]
    out: list[list[Run]] = []
    for b in bundles:
        order = sorted(b, key=lambda r: (seed_of(r) if seed_of else 0, b.index(r)))
        out += [order[i : i + per_job] for i in range(0, len(order), per_job)]
    return out


def split_evenly(bundles: list[list[Run]], parts: int,
                 seed_of: Callable[[Run], int] | None = None) -> list[list[Run]]:
    """Split the runs of a phase into about ``parts`` jobs (for one worker per GPU)."""
    total = sum(len(b) for b in bundles)
    if parts <= 1 or total <= len(bundles):
        return [list(b) for b in bundles if b]
    return split_bundles(bundles, max(1, -(-total // parts)), seed_of)

