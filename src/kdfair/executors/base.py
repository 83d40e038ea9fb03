"""What every executor does, and the one function that drives a study through one.

``execute`` plans the study once (``runner.prepare``), then hands each phase's bundles of
``RunSpec``s to the executor; the store is the truth about what is done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from kdfair.config import Experiment
from kdfair.data.base import SplitData
from kdfair.runner import StudyStatus, load_data, phases, prepare, status
from kdfair.spec import RunSpec
from kdfair.store import study_lock

log = logging.getLogger("kdfair")


class Executor(Protocol):
    """Where a study's bundles train."""

    def start(self, exp: Experiment, out: Path) -> None:
        """Checks made before the store is touched (e.g. that the cluster takes the jobs)."""

    def run_phase(self, exp: Experiment, out: Path, bundles: list[list[RunSpec]],
                  data: SplitData, data_root: Path | None) -> None:
        """Train the bundles of one phase; return when all have ended."""


def execute(exp: Experiment, out: Path, executor: Executor, data: SplitData | None = None,
            data_root: Path | None = None,
            on_plan: Callable[[list[RunSpec], set[str]], None] | None = None) -> StudyStatus:
    """Train every planned run the store lacks, holding the study's lock; return where every
    run stands (``repaired``: damaged runs moved aside and trained again).

    ``on_plan(specs, done)`` is called once the plan is known, before any training.
    """
    executor.start(exp, out)
    data = data if data is not None else load_data(exp, data_root)
    repaired: dict[str, str] = {}
    with study_lock(out, on_wait=log.warning):  # one writer per study
        store, specs = prepare(exp, out, data, repaired)
        if on_plan is not None:
            on_plan(specs, store.done_ids() & {s.run_id for s in specs})
        for phase in phases(store, specs):
            executor.run_phase(exp, out, phase, data, data_root)
        st = status(store, [s.run_id for s in specs])
    st.repaired = repaired
    return st
