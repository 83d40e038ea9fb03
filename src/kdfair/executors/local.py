"""Local executors: the runs in this process (``LocalExecutor``), or one worker process per GPU
or, with ``engine.workers``, per CPU core (``LocalPoolExecutor``), chosen by
``local_executor``.

Workers receive the validated experiment (never validated again). A worker started by fork
inherits everything of this process, data and registrations included; one started by spawn
imports kdfair afresh, so what was registered at run time (``kdfair.study``,
``register_dataset``, ``register_model``) is sent to it — the loaded data set, the model
factories — or refused, naming the fix, when it cannot be sent (``portable``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as queue_mod
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from kdfair.config import Experiment, cpu_workers, engine_threads
from kdfair.data import registry as data_registry
from kdfair.data.base import SplitData
from kdfair.errors import ConfigError, KdfairError
from kdfair.executors.base import Executor
from kdfair.executors.split import split_evenly
from kdfair.models import registry as model_registry
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


def pool_devices(exp: Experiment) -> tuple[list[str], int]:
    """The devices of the default executor's worker processes and each one's threads: one
    per GPU when several are visible and the experiment runs on CUDA, ``engine.workers`` on a
    CPU (the cores shared out between them); ``([], 0)``: it trains in this process."""
    n = torch.cuda.device_count() if exp.device != "cpu" else 0
    if n > 1:
        return [f"cuda:{i}" for i in range(n)], engine_threads(exp.engine, n)
    workers = cpu_workers(exp.engine)
    if workers > 1 and resolve_device(exp.device).type == "cpu":
        return ["cpu"] * workers, engine_threads(exp.engine, workers)
    return [], 0


def local_executor(exp: Experiment, reporter: Reporter | None = None,
                   on_run: Callable[[RunSpec, str], None] | None = None) -> Executor:
    """The default executor: in this process, or a pool of worker processes (``pool_devices``)."""
    devices, threads = pool_devices(exp)
    if devices:
        return LocalPoolExecutor(devices, reporter, on_run, threads)
    return LocalExecutor(reporter, on_run)


# the worker's state, set before the pool forks (inherited) or by its initializer
_WORKER: dict[str, Any] = {}


def _init_worker(devices: Any, events: Any, threads: int | None,
                 sent: bytes | None = None) -> None:
    """Pin this worker to one device before anything touches CUDA; take what this process
    registered at run time (``sent``, see ``portable``)."""
    dev = devices.get()
    if dev.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = dev.split(":", 1)[1]
    _WORKER.update(device=dev, events=events)
    if threads:
        torch.set_num_threads(threads)
    if sent is not None:
        data, factories = pickle.loads(sent)
        for name, factory in factories.items():
            model_registry.register_model(name, factory)
        if data is not None:
            _WORKER["data"] = data


def portable(exp: Experiment, data: SplitData) -> bytes | None:
    """What a spawned worker needs of this process' run-time registrations, pickled: the loaded
    data set (when its loader was registered here) and the factories of the architectures
    registered here; None when there are none. Refused with a ConfigError naming the fix when
    one cannot be pickled."""
    factories = _portable_factories(exp)
    if data_registry.is_builtin(exp.dataset.name):  # each worker loads it again
        return pickle.dumps((None, factories)) if factories else None
    return _pickled((data, factories), f"the data of data set {exp.dataset.name!r}, registered "
                    "in this Python process (kdfair.study or register_dataset),",
                    "give data that pickles (arrays and tensors)")


def _portable_factories(exp: Experiment) -> dict[str, Any]:
    """The factories of the experiment's architectures registered in this process (a fresh
    process does not know them), each checked to pickle."""
    archs = sorted({r.model.arch for r in (exp.teacher, exp.student)
                    if not model_registry.is_builtin(r.model.arch)})
    factories = {a: model_registry.get_factory(a) for a in archs}
    for arch, factory in factories.items():
        _pickled(factory, f"the factory of model {arch!r}, registered in this Python process "
                 "(kdfair.study or register_model),", "define the model as a module-level "
                 "function or class of an importable module (not a lambda or a function "
                 "defined inside another)")
    return factories


def _pickled(obj: Any, what: str, fix: str) -> bytes:
    try:
        return pickle.dumps(obj)
    except Exception as err:  # noqa: BLE001 - anything pickle refuses
        raise ConfigError(
            f"{what} cannot be sent to worker processes started by spawn ({type(err).__name__}: "
            f"{err}). Either {fix}, or train in this process: engine.workers: 1 and one "
            "visible GPU (CUDA_VISIBLE_DEVICES=0)") from None


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's thread count ``n`` for the block (None: as it is), as a worker would have it."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _QueueReporter:
    def __init__(self, events: Any):
        self.events = events

    def start(self, run_id: str, epochs: int) -> None:
        self.events.put(("start", run_id, epochs))

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        self.events.put(("epoch", run_id, epoch, loss, images_per_s))

    def finish(self, run_id: str, status: str) -> None:
        self.events.put(("finish", run_id, status))


def _train_in_worker(exp: Experiment, out: str, specs: list[dict[str, Any]],
                     data_root: str | None) -> str:
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
    this process or the platform is not Linux, then spawned (each loads a built-in data set
    again; see the module docstring for data and models registered at run time);
    ``start_method`` chooses.
    """

    devices: list[str]
    reporter: Reporter | None = None
    on_run: Callable[[RunSpec, str], None] | None = None
    threads: int | None = None
    start_method: Literal["fork", "spawn"] | None = None

    def forks(self) -> bool:
        """Whether workers are forked (else spawned)."""
        if self.start_method is not None:
            return self.start_method == "fork"
        return sys.platform == "linux" and not torch.cuda.is_initialized()

    def start(self, exp: Experiment, out: Path) -> None:
        """Refuse models registered here that spawned workers cannot build, before the store
        is touched (the data set is checked once loaded, in ``run_phase``)."""
        if not self.forks():
            _portable_factories(exp)

    def run_phase(self, exp: Experiment, out: Path, bundles: list[list[RunSpec]],
                  data: SplitData, data_root: Path | None) -> None:
        by_id = {s.run_id: s for b in bundles for s in b}
        chunks = split_evenly(bundles, len(self.devices), lambda s: s.seed)
        if len(chunks) == 1 and self.devices[0] == "cpu":  # nothing to share out: no fork
            with _torch_threads(self.threads):
                train_runs(exp, out, chunks[0], data=data, data_root=data_root,
                           reporter=self.reporter, on_run=self.on_run)
            return
        # no more processes than the phase has chunks (a fork starts them all at once)
        used = self.devices[:len(chunks)]
        fork = self.forks()
        sent = None if fork else portable(exp, data)  # refused before any process starts
        ctx = mp.get_context("fork" if fork else "spawn")
        devices, events = ctx.Queue(), ctx.Queue()
        for d in used:
            devices.put(d)
        _WORKER.clear()
        if fork:
            _WORKER["data"] = data
        root = str(data_root) if data_root else None
        errors: list[BaseException] = []
        with ProcessPoolExecutor(len(used), mp_context=ctx, initializer=_init_worker,
                                 initargs=(devices, events, self.threads, sent)) as pool:
            pending = {pool.submit(_train_in_worker, exp, str(out),
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
                        errors.append(err)
                        err.add_note(f"(in the worker training {chunk[0].run_id}…)")
            self._drain(events, by_id)
        self._drain(events, by_id)  # workers joined: their last events have arrived
        _WORKER.clear()
        if len(errors) == 1:  # as it would have been raised in this process
            raise errors[0]
        if errors:
            raise RuntimeError("workers failed: " + "; ".join(
                f"{type(e).__name__}: {e} {' '.join(getattr(e, '__notes__', []))}"
                for e in errors)) from errors[0]

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
