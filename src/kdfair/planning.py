"""A study before it trains: the resolved experiment, its runs (done / to train, per role) and a
time estimate from a short timed probe of each role's model on this device.

The probe trains each kind of run (teacher, NDS, each method's DS) for a few steps through the
engine itself — same model, optimiser, augmentation, teacher logits and evaluation — timing the
steps, one validation pass and what comes before and after training; scaled by epochs × steps it
gives a run's seconds alone on one worker. The local executor's split of each phase over its
workers turns those into wall time; the report's time comes from the store's size. The same
estimate (``StudyPlan.schedule``) starts the progress view, whose ETA then corrects it from the
measured epochs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from kdfair.config import Experiment, load_experiment
from kdfair.data.base import SplitData
from kdfair.errors import KdfairError
from kdfair.overrides import Overrides
from kdfair.progress import Schedule, phase_seconds
from kdfair.runner import bundles, check_store, load_data, plan
from kdfair.spec import RunSpec
from kdfair.store import ResultsDir
from kdfair.store.files import read_json

log = logging.getLogger("kdfair")

# the report's seconds: a fixed part, and a part per run (seed statistics, class-wise tests,
# figures), growing with the square root of the test set beyond the demo's 600 inputs; fitted on
# the demo (21 runs: ~38 s) and an 8-run version of it (~18 s) on a 2-core CPU
REPORT_FIXED_S = 6.0
REPORT_PER_RUN_S = 1.5


def role_label(spec: RunSpec) -> str:
    """How a run's kind is shown: ``teacher``, ``NDS``, ``NDS ls``, ``DS T=4``, ``DS dkd T=4``."""
    method = f" {spec.method}" if spec.method else ""
    if spec.role == "teacher":
        return "teacher" + (" (given)" if spec.given else "")
    if spec.role == "nds":
        return "NDS" + method
    return f"DS{method} T={spec.temperature:g}"


def cost_key(spec: RunSpec) -> str:
    """Runs that cost the same to train: role, method, model and recipe (not seed or T)."""
    return json.dumps([spec.role, spec.method, spec.arch, spec.model_options, spec.train,
                       spec.given], sort_keys=True, default=str)


@dataclass(frozen=True)
class RoleRuns:
    """One row of a plan: the runs of one kind, how many are done, and one run's seconds."""

    role: str
    total: int
    done: int
    seconds_per_run: float | None

    @property
    def to_train(self) -> int:
        return self.total - self.done


@dataclass(frozen=True)
class Estimate:
    """How long the study takes here: each run alone on one worker (``per_run``), the runs left
    split over ``workers`` as the local executor splits them (``train_s``, wall), the report."""

    per_run: dict[str, float]
    workers: int
    threads: int
    device: str
    train_s: float
    report_s: float
    probe_s: float

    @property
    def total_s(self) -> float:
        return self.train_s + self.report_s


@dataclass
class StudyPlan:
    """What ``kdfair run`` would do: the resolved experiment, its runs, what is done, and (unless
    it could not be made: ``problem`` says why) the time estimate."""

    experiment: Experiment
    where: Path
    specs: list[RunSpec]
    done: set[str] = field(default_factory=set)
    estimate: Estimate | None = None
    problem: str | None = None
    refusal: str | None = None  # why `kdfair run` would refuse this results directory
    chunks: list[list[list[str]]] = field(default_factory=list)  # phase -> worker chunks

    @property
    def to_train(self) -> list[RunSpec]:
        return [s for s in self.specs if s.run_id not in self.done]

    def yaml(self) -> str:
        """The experiment as it will run, every default and override filled in."""
        return yaml.safe_dump(self.experiment.model_dump(mode="json"), sort_keys=False,
                              allow_unicode=True)

    def roles(self) -> list[RoleRuns]:
        """Runs per kind, in plan order."""
        rows: dict[str, list[Any]] = {}
        for s in self.specs:
            row = rows.setdefault(role_label(s), [0, 0, None])
            row[0] += 1
            row[1] += s.run_id in self.done
            if self.estimate is not None:
                row[2] = self.estimate.per_run.get(s.run_id, row[2])
        return [RoleRuns(k, n, d, sec) for k, (n, d, sec) in rows.items()]

    def schedule(self) -> Schedule | None:
        """What the progress view needs to start from this estimate (None without one)."""
        if self.estimate is None:
            return None
        roles = {s.run_id: s.role for s in self.specs}
        return Schedule(cost=dict(self.estimate.per_run), role=roles, phases=self.chunks,
                        workers=self.estimate.workers, report_s=self.estimate.report_s)


def plan_study(experiment: Experiment | str | Path, out: str | Path = "results", *,
               overrides: Overrides | None = None, data_root: str | Path | None = None,
               data: SplitData | None = None, probe: bool = True,
               on_step: Callable[[str], None] | None = None) -> StudyPlan:
    """The plan of ``experiment`` into ``<out>/<name>``: nothing is written or trained.

    The data set is loaded (run ids hash its fingerprint); when it cannot be, the plan still
    lists the runs and ``problem`` says why there is no estimate. ``probe``: time each kind of
    run for a few steps (a few seconds on a CPU) for the estimate. ``on_step(text)``: each phase
    as it starts (loading data, probing a model).
    """
    exp = load_experiment(experiment, overrides or ())
    where = Path(out) / exp.name
    say = on_step or (lambda text: None)
    if data is None:
        say(f"loading data set {exp.dataset.name}")
        try:
            data = load_data(exp, Path(data_root) if data_root else None)
        except (KdfairError, OSError) as err:  # run ids as the store's data fingerprint makes
            specs = plan(exp, _stored_fingerprint(where) or "unknown")
            return StudyPlan(exp, where, specs, _done(where) & {s.run_id for s in specs},
                             problem=str(err), refusal=_refusal(where, specs, exp))
    specs = plan(exp, data.fingerprint)
    done = _done(where) & {s.run_id for s in specs}
    result = StudyPlan(exp, where, specs, done, refusal=_refusal(where, specs, exp))
    workers, threads, device = _workers(exp)
    result.chunks = chunked(specs, done, workers)
    if probe and result.to_train:
        result.estimate = estimate(exp, specs, done, data, result.chunks, workers, threads,
                                   device, say)
    elif not result.to_train:
        result.estimate = Estimate({}, workers, threads, str(device), 0.0,
                                   report_seconds(len(specs), len(data.test)), 0.0)
    return result


def progress_schedule(exp: Experiment, specs: list[RunSpec], done: set[str], data: SplitData,
                      on_step: Callable[[str], None] | None = None) -> Schedule | None:
    """The estimate the progress view of a local run starts from; None when the probe fails
    (the view then learns from the runs alone: an estimate never stops a study), and None
    without a probe where one worker per GPU trains: probing here would initialise CUDA in this
    process, so its workers could no longer be forked (spawned ones need data that pickles and a
    ``__main__`` guard)."""
    workers, threads, device = _workers(exp)
    if device.type == "cuda" and workers > 1:
        return None
    result = StudyPlan(exp, Path("."), specs, done, chunks=chunked(specs, done, workers))
    try:
        result.estimate = estimate(exp, specs, done, data, result.chunks, workers, threads,
                                   device, on_step)
    except Exception as err:  # noqa: BLE001 - the study trains anyway
        log.warning("no time estimate: timing a few training steps failed (%s: %s)",
                    type(err).__name__, err)
        return None
    return result.schedule()


def _stored_fingerprint(where: Path) -> str | None:
    """The data fingerprint the study's store recorded (data.json), if it has one."""
    try:
        return str(read_json(where / "data.json").get("fingerprint") or "") or None
    except (KdfairError, OSError, ValueError, AttributeError):
        return None


def _refusal(where: Path, specs: list[RunSpec], exp: Experiment) -> str | None:
    """Why ``kdfair run`` would refuse the results directory (runs of another configuration),
    or None."""
    if not (where / "experiment.json").exists():
        return None
    try:
        check_store(ResultsDir(where), specs, exp.model_dump(mode="json"))
    except KdfairError as err:
        return str(err)
    return None


def _done(where: Path) -> set[str]:
    if not (where / "experiment.json").exists():
        return set()
    try:
        return ResultsDir(where).done_ids()
    except (KdfairError, OSError):
        return set()


def _workers(exp: Experiment) -> tuple[int, int, torch.device]:
    """Workers, threads per worker and device, as the local executor will choose them."""
    from kdfair.config import available_cores
    from kdfair.executors.local import pool_devices
    from kdfair.train.device import resolve_device

    device = resolve_device(exp.device)
    devices, threads = pool_devices(exp)
    if devices:
        return len(devices), threads, device
    return 1, exp.engine.threads or min(torch.get_num_threads(), available_cores()), device


def chunked(specs: list[RunSpec], done: set[str], workers: int) -> list[list[list[str]]]:
    """What is left, per phase (teachers, then students), as the chunks of runs the local
    executor gives its workers (each chunk trains its runs one after another)."""
    from kdfair.executors.split import split_evenly

    phases: list[list[list[RunSpec]]] = [[], []]
    for bundle in bundles(specs):
        todo = [s for s in bundle if s.run_id not in done]
        if todo:
            phases[0 if bundle[0].role == "teacher" else 1].append(todo)
    out = []
    for phase in (p for p in phases if p):
        chunks = split_evenly(phase, workers, lambda s: s.seed) if workers > 1 else phase
        out.append([[s.run_id for s in c] for c in chunks])
    return out


def report_seconds(runs: int, n_test: int) -> float:
    """The report's seconds for a study of ``runs`` runs on ``n_test`` test inputs."""
    return REPORT_FIXED_S + REPORT_PER_RUN_S * runs * max(1.0, n_test / 600) ** 0.5


def estimate(exp: Experiment, specs: list[RunSpec], done: set[str], data: SplitData,
             chunks: list[list[list[str]]], workers: int, threads: int, device: torch.device,
             say: Callable[[str], None] | None = None) -> Estimate:
    """Probe each kind of run left to train, then the study's wall time (see the module)."""
    from kdfair.runner import _threads
    from kdfair.train.device import engine_mode

    say = say or (lambda text: None)
    t0 = time.perf_counter()
    by_id = {s.run_id: s for s in specs}
    probes: dict[str, Probe] = {}
    teacher_probe: Probe | None = None
    # the engine's numerics, as training will have them (TF32, deterministic algorithms); on
    # CUDA with engine.deterministic, CUBLAS_WORKSPACE_CONFIG is then set before the probe makes
    # this process' first cuBLAS handle (set later, it would not apply to training)
    eng = exp.engine
    with _threads(threads), engine_mode(device, eng.precision, eng.deterministic):
        for s in specs:
            if s.run_id in done or cost_key(s) in probes:
                continue
            say(f"timing a few training steps of {role_label(s).split(' T=')[0]} ({s.arch})")
            teacher = by_id.get(s.teacher_run_id or "")
            probes[cost_key(s)] = probe_run(s, data, device, teacher, exp.engine.precision)
            if s.role == "teacher" and teacher_probe is None:
                teacher_probe = probes[cost_key(s)]
    per_run = {s.run_id: probes[cost_key(s)].run_seconds(s) for s in specs
               if s.run_id not in done}
    # a DS trained on unaugmented in-memory inputs reads its teacher's logits from a table, one
    # teacher pass over the training set per teacher and worker chunk: shared by its runs
    if teacher_probe is not None:
        for phase in chunks:
            for chunk in phase:
                tabled = [r for r in chunk if _uses_table(by_id[r], data)]
                teachers = {by_id[r].teacher_run_id for r in tabled}
                for r in tabled:
                    per_run[r] += (teacher_probe.forward_s_per_input * len(data.train)
                                   * len(teachers) / len(tabled))
    train_s = sum(phase_seconds([sum(per_run[r] for r in c) for c in phase], workers)
                  for phase in chunks)
    return Estimate(per_run, workers, threads, str(device), train_s,
                    report_seconds(len(specs), len(data.test)), time.perf_counter() - t0)


def _uses_table(spec: RunSpec, data: SplitData) -> bool:
    return spec.role == "ds" and spec.train.get("augment") == "none" and data.train.in_memory


@dataclass(frozen=True)
class Probe:
    """One kind of run, timed: seconds before training (``setup_s``), per training step, per
    validation pass and after training (evaluation on val, test and counterfactual inputs)."""

    setup_s: float
    step_s: float
    val_s: float
    after_s: float
    forward_s_per_input: float
    steps_per_epoch: int

    def run_seconds(self, spec: RunSpec) -> float:
        epochs = int(spec.train.get("epochs", 1))
        return (self.setup_s + epochs * (self.steps_per_epoch * self.step_s + self.val_s)
                + self.after_s)


class _Timed:
    """The probe's view of the engine: when training starts (``start``) and each epoch ends."""

    def __init__(self) -> None:
        self.started = self.epoch_at = math.nan

    def start(self, run_id: str, epochs: int) -> None:
        self.started = time.perf_counter()

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        self.epoch_at = time.perf_counter()

    def finish(self, run_id: str, status: str) -> None:
        pass


class _FewSteps:
    """A training part whose epochs stop after ``warmup + steps`` batches; ``times``: when each
    batch was asked for (so the last ``steps`` steps are timed exactly)."""

    def __init__(self, batches: Any, warmup: int, steps: int):
        self.batches, self.limit, self.warmup = batches, warmup + steps, warmup
        self.times: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batches, name)

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, cfg: Any, seeds: list[int], epoch: int) -> Iterator[Any]:
        for i, step in enumerate(self.batches.epoch(cfg, seeds, epoch)):
            self.times.append(time.perf_counter())
            if i == self.limit:
                return
            yield step
        self.times.append(time.perf_counter())

    def step_seconds(self) -> float:
        t = self.times
        first = min(self.warmup, max(0, len(t) - 2))
        return (t[-1] - t[first]) / max(1, len(t) - 1 - first)


def _unweighted(spec: RunSpec) -> RunSpec:
    """``spec`` built from scratch: pretrained or given weights cost nothing to time (and are
    never downloaded for a probe)."""
    opts = {k: v for k, v in spec.model_options.items()
            if k not in ("weights", "download", "checkpoint")}
    return replace(spec, model_options=opts)


def probe_run(spec: RunSpec, data: SplitData, device: torch.device,
              teacher: RunSpec | None = None, precision: str = "auto",
              warmup: int = 2, steps: int = 4) -> Probe:
    """Time ``warmup + steps`` training steps of ``spec`` (one epoch cut short), then its
    validation and evaluation, through the engine (a DS with an untrained teacher of the same
    architecture: the cost is the same). Draws no randomness outside its own."""
    from kdfair.train.batches import Batches
    from kdfair.train.device import prepare_module
    from kdfair.train.engine import (
        RunJob,
        build_run_model,
        counterfactual_part,
        train_group,
    )

    one = replace(_unweighted(spec), train={**spec.train, "epochs": 1})
    parts = {k: Batches(getattr(data, k), data, device) for k in ("train", "val", "test")}
    parts.update({counterfactual_part(a): Batches(p, data, device)
                  for a, p in data.counterfactuals.items()})
    steps_per_epoch = parts["train"].steps_per_epoch(int(spec.train.get("batch_size", 1)))
    few = _FewSteps(parts["train"], warmup, steps)
    parts["train"] = few
    job, tables = RunJob(one), {}
    if spec.role == "ds" and teacher is not None:
        with torch.random.fork_rng(devices=[]):
            model = prepare_module(build_run_model(_unweighted(teacher), data),
                                   device).requires_grad_(False)
        job = RunJob(one, teacher=model.eval(), teacher_spec=teacher)
        if _uses_table(spec, data):  # the table's values do not change the cost of a step
            tables = {id(model): torch.zeros(len(data.train), data.num_classes, device=device)}
    timed = _Timed()
    with torch.random.fork_rng(devices=[]):
        t0 = time.perf_counter()
        train_group([job], data, device, parts, timed, tables, precision=precision)
        t1 = time.perf_counter()
    if spec.given:  # evaluated only
        n = len(data.val) + len(data.test)
        return Probe(0.0, 0.0, 0.0, t1 - t0, (t1 - t0) / max(1, n), 0)
    end_of_steps = few.times[-1] if few.times else timed.started
    val_s = max(0.0, timed.epoch_at - end_of_steps) if len(data.val) else 0.0
    return Probe(setup_s=max(0.0, timed.started - t0), step_s=few.step_seconds(), val_s=val_s,
                 after_s=max(0.0, t1 - timed.epoch_at),
                 forward_s_per_input=val_s / max(1, len(data.val)),
                 steps_per_epoch=steps_per_epoch)
