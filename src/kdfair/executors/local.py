"""Local executors: the runs in this process (``LocalExecutor``), or one worker process per GPU
or, with ``engine.workers``, per CPU core (``LocalPoolExecutor``), chosen by
``local_executor``."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdfair.config import Experiment, cpu_workers, engine_threads, experiment_from_dict
from kdfair.data.base import SplitData
from kdfair.errors import KdfairError
from kdfair.executors.base import Executor
from kdfair.executors.split import split_evenly
from kdfair.runner import train_runs
from kdfair.spec import RunSpec
from kdfair.train.device import resolve_device
from kdfair.train.engine import Reporter


@dataclass
class LocalExecutor:
    """Bundles run one after another in this process."""

    reporter: Reporter | None = None
    on_run: Callable[[RunSpec, str], None] | None = None

    def start(self, exp: Experiment, out: Path) -> None:
        pass

    def run_phase(self, exp: Experiment, out: Path, bundles: list[list[RunSpec]],
                  data: SplitData, data_root: Path | None) -> None:
        for specs in bundles:
            train_runs(exp, out, specs, data=data, reporter=self.reporter, on_run=self.on_run)


def local_executor(exp: Experiment, reporter: Reporter | None = None,
                   on_run: Callable[[RunSpec, str], None] | None = None) -> Executor:
    """The default executor: in this process, or one worker process per GPU when several are
    visible and the experiment runs on CUDA, or ``engine.workers`` processes on a CPU."""
    n = torch.cuda.device_count() if exp.device != "cpu" else 0
    if n > 1:  # the CPU cores shared out between the workers
        threads = engine_threads(exp.engine, n)
        return LocalPoolExecutor([f"cuda:{i}" for i in range(n)], reporter, on_run, threads)
    workers = cpu_workers(exp.engine)
    if workers > 1 and resolve_device(exp.device).type == "cpu":
        return LocalPoolExecutor(["cpu"] * workers, reporter, on_run,
                                 engine_threads(exp.engine, workers))
    return LocalExecutor(reporter, on_run)


# the worker's state, set before the pool forks (inherited) or by its initializer
_WORKER: dict[str, Any] = {}


def _init_worker(devices: Any, events: Any, threads: int | None) -> None:
    """Pin this worker to one device before anything touches CUDA."""
    dev = devices.get()
    if dev.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = dev.split(":", 1)[1]
    _WORKER.update(device=dev, events=events)
    if threads:
        torch.set_num_threads(threads)


class _QueueReporter:
    def __init__(self, events: Any):
        self.events = events

    def start(self, run_id: str, epochs: int) -> None:
        self.events.put(("start", run_id, epochs))

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        self.events.put(("epoch", run_id, epoch, loss, images_per_s))

    def finish(self, run_id: str, status: str) -> None:
        self.events.put(("finish", run_id, status))


def _train_in_worker(exp_json: dict[str, Any], out: str, specs: list[dict[str, Any]],
                     data_root: str | None) -> str:
    exp = experiment_from_dict(exp_json, "(worker)")
    data = _WORKER.get("data")
    events = _WORKER["events"]
    train_runs(exp, Path(out), [RunSpec.from_json(s) for s in specs], data=data,
               data_root=Path(data_root) if data_root else None,
               reporter=_QueueReporter(events),
               on_run=lambda spec, state: events.put(("run", spec.run_id, state)))
    return _WORKER["device"]


@dataclass
class LocalPoolExecutor:
    """One worker process per device; a phase's runs are split over them.

    Workers are forked (they inherit the loaded data) unless CUDA is already initialised in
    this process, then spawned (each loads the data again).
    """

    devices: list[str]
    reporter: Reporter | None = None
    on_run: Callable[[RunSpec, str], None] | None = None
    threads: int | None = None

    def start(self, exp: Experiment, out: Path) -> None:
        pass

    def run_phase(self, exp: Experiment, out: Path, bundles: list[list[RunSpec]],
                  data: SplitData, data_root: Path | None) -> None:
        by_id = {s.run_id: s for b in bundles for s in b}
        chunks = split_evenly(bundles, len(self.devices), lambda s: s.seed)
        # no more processes than the phase has chunks (a fork starts them all at once)
        used = self.devices[:len(chunks)]
        fork = sys.platform == "linux" and not torch.cuda.is_initialized()
        ctx = mp.get_context("fork" if fork else "spawn")
        devices, events = ctx.Queue(), ctx.Queue()
        for d in used:
            devices.put(d)
        _WORKER.clear()
        if fork:
            _WORKER["data"] = data
        exp_json = exp.model_dump(mode="json")
        root = str(data_root) if data_root else None
        errors: list[str] = []
        with ProcessPoolExecutor(len(used), mp_context=ctx, initializer=_init_worker,
                                 initargs=(devices, events, self.threads)) as pool:
            pending = {pool.submit(_train_in_worker, exp_json, str(out),
                                   [s.to_json() for s in c], root): c for c in chunks}
            while pending:
                finished, _ = wait_futures(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                self._drain(events, by_id)
                for fut in finished:
                    chunk = pending.pop(fut)
                    err = fut.exception()
                    if err is not None:
                        if isinstance(err, KdfairError):
                            raise err
                        errors.append(f"{chunk[0].run_id}…: {type(err).__name__}: {err}")
            self._drain(events, by_id)
        self._drain(events, by_id)  # workers joined: their last events have arrived
        _WORKER.clear()
        if errors:
            raise RuntimeError("a worker failed: " + "; ".join(errors))

    def _drain(self, events: Any, by_id: dict[str, RunSpec]) -> None:
        while True:
            try:
                ev = events.get_nowait()
            except queue_mod.Empty:
                return
            kind, run_id, *rest = ev
            if kind == "run":
                if self.on_run:
                    self.on_run(by_id[run_id], rest[0])
            elif self.reporter is not None:
                getattr(self.reporter, kind)(run_id, *rest)
