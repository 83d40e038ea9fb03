"""Training engine: ``train_bundle`` trains the runs of one bundle; ``fit`` is the one loop.

Every run trains as a member of a bank of G >= 1 members (``models.bank``): G = 1 is the plain
model, G > 1 the members side by side (``ListBank``, on a CPU) or one network of grouped
convolutions (on CUDA). The loop is handed one objective per member (``methods``) and the
teachers' logits (``teachers``); the only branch left is the batch source (``batches``).

Member m is initialised from its own seed, sees the batches of its own seed's streams, and is
optimised on its own loss. The member losses are summed: their parameters are disjoint, so each
gets exactly its own gradient, and kdfair's optimisers act elementwise, so each member's step is
the step it would take alone — a run's result never depends on what it was bundled with.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
from torch.profiler import record_function

from kdfair.config import TrainConfig
from kdfair.data.base import SplitData
from kdfair.errors import RunFailed
from kdfair.models.bank import ListBank, bank_from_members, member_state
from kdfair.models.registry import bankable, build_model
from kdfair.spec import RunSpec
from kdfair.tracking import validation_fairness
from kdfair.train.batches import Batches, Inputs
from kdfair.train.device import (
    autocast,
    channels_last,
    device_name,
    engine_mode,
    prepare_module,
    resolve_precision,
)
from kdfair.train.diagnose import nonfinite_loss_hint
from kdfair.train.methods import MemberStep, Objective, objective_for
from kdfair.train.seeding import derive_seed
from kdfair.train.teachers import LayerTaps, TeacherLogits, teacher_bank

log = logging.getLogger("kdfair")


@dataclass
class RunJob:
    """A run to train; DS runs carry their (frozen, eval-mode) teacher."""

    spec: RunSpec
    teacher: nn.Module | None = None
    init_weights: dict[str, torch.Tensor] | None = None  # a teacher given, not trained
    teacher_spec: RunSpec | None = None  # lets a group bank several teachers of one architecture


@dataclass
class TrainedRun:
    """A finished run as the engine hands it back: metrics, test logits and the model."""

    spec: RunSpec
    metrics: dict[str, Any]
    logits: np.ndarray
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    # attribute -> logits on the test set's counterfactuals (row i: test input i's)
    counterfactual_logits: dict[str, np.ndarray] = field(default_factory=dict)


class Reporter(Protocol):
    def start(self, run_id: str, epochs: int) -> None: ...
    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None: ...
    def finish(self, run_id: str, status: str) -> None: ...


class Silent:
    """A reporter that reports nothing."""

    def start(self, run_id: str, epochs: int) -> None:
        pass

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        pass

    def finish(self, run_id: str, status: str) -> None:
        pass


def build_run_model(spec: RunSpec, data: SplitData) -> nn.Module:
    """The run's model, initialised from its own seed's "init" stream."""
    return build_spec_model(spec, data.num_classes, data.input_shape)


def build_spec_model(spec: RunSpec, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """The model of ``spec`` for ``num_classes`` outputs and inputs of ``input_shape``,
    initialised from the seed's "init" stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(spec.seed, "init"))
        opts = {k: v for k, v in spec.model_options.items() if k != "checkpoint"}
        return build_model(spec.arch, num_classes, tuple(input_shape), **opts)


def lr_factor(step: int, total: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` of ``total``."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    if cfg.schedule == "linear":
        return 1.0 - p
    if cfg.schedule == "step":
        return cfg.step_gamma ** sum(p >= m for m in cfg.step_milestones)
    return 1.0


def make_optimizer(model: nn.Module, cfg: TrainConfig,
                   fused: bool | None = None) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``model``'s trainable parameters. ``fused`` (default: when
    they all live on CUDA) updates them in one kernel per step: the same elementwise update,
    equal to the unfused one within float32 rounding (tests/test_precision.py)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if fused is None:
        fused = bool(params) and all(p.is_cuda for p in params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay, fused=fused or None)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def member_inputs(bank: nn.Module, xs: list[Inputs]) -> Any:
    """The bank's input from one batch per member: a list (``ListBank``) or the batches
    concatenated along channels (a grouped bank, [B, G*C, H, W])."""
    return xs if isinstance(bank, ListBank) else torch.cat(xs, dim=1)  # type: ignore[arg-type]


@torch.no_grad()
def predict(model: nn.Module, batches: Batches, device: torch.device,
            precision: str = "auto") -> torch.Tensor:
    """Logits (float32, on the CPU) of a plain model on every input of a part, in order, computed
    at ``precision`` (``engine.precision``)."""
    model.eval()
    out = []
    for xb in batches.eval():
        with autocast(device, precision):
            out.append(model(channels_last(xb)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def bank_accuracy(bank: nn.Module, batches: Batches, device: torch.device,
                  precision: str = "auto", preds: list[torch.Tensor] | None = None
                  ) -> list[float]:
    """Each member's accuracy on a part (every member sees every input); ``preds`` receives
    each batch's predicted classes [B, G] when given."""
    bank.eval()
    g = bank.members  # type: ignore[attr-defined]
    correct, start = torch.zeros(g, device=device), 0
    for xb in batches.eval():
        with autocast(device, precision):
            logits = bank(member_inputs(bank, [channels_last(xb)] * g))  # [B, G, K]
        n = len(logits)
        correct += (logits.argmax(-1) == batches.y[start : start + n, None]).sum(0)
        if preds is not None:
            preds.append(logits.argmax(-1).cpu())
        start += n
    return (correct / max(1, start)).tolist()


def fit(bank: nn.Module, objectives: list[Objective], teacher_logits: TeacherLogits,
        seed_index: list[int], seeds: list[int], cfg: TrainConfig, train: Batches,
        val: Batches | None, device: torch.device, reporter: Reporter, label: str,
        forward: Callable[[Any], torch.Tensor] | None = None,
        precision: str = "auto",
        on_val: Callable[[np.ndarray], list[dict[str, float]]] | None = None,
        ) -> tuple[list[list[dict[str, float]]], dict[int, str]]:
    """Train the G members of ``bank``, member m on ``objectives[m]`` over the batches of seed
    ``seeds[seed_index[m]]``; return each member's per-epoch history and the members whose loss
    stopped being finite (member -> reason). Training ends early once every member failed.
    ``on_val``: the members' predicted classes on the validation set [N, G] -> one dict per
    member added to its epoch's history (``tracking.validation_fairness``: DPD / EOD)."""
    forward = bank if forward is None else forward  # (a compiled module has no truth value)
    g = len(objectives)
    opt = make_optimizer(nn.ModuleList([bank, *objectives]), cfg)  # some objectives learn too
    taps = StudentTaps(bank, [o.student_layer for o in objectives])
    steps = train.steps_per_epoch(cfg.batch_size)
    total, step = steps * cfg.epochs, 0
    histories: list[list[dict[str, float]]] = [[] for _ in range(g)]
    failed: dict[int, str] = {}
    reporter.start(label, cfg.epochs)
    for epoch in range(cfg.epochs):
        bank.train()
        t_epoch = time.perf_counter()
        loss_sum, correct, seen = torch.zeros(g, device=device), torch.zeros(g, device=device), 0
        for batch in _labelled(train.epoch(cfg, seeds, epoch), "kdfair.data"):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, total, steps, cfg)
            ys = [batch.y[s] for s in seed_index]
            with autocast(device, precision):
                with record_function("kdfair.forward"):
                    logits = forward(member_inputs(bank, [channels_last(batch.x[s])
                                                          for s in seed_index]))  # [B, G, K]
                with record_function("kdfair.teacher"):
                    t_logits, t_feats = teacher_logits(batch)
                feats = taps.take()
                with record_function("kdfair.loss"):
                    losses = torch.stack([
                        objective(MemberStep(logits[:, m], ys[m], t_logits[m], step / steps,
                                             feats[m], t_feats[m]))
                        for m, objective in enumerate(objectives)])
            with record_function("kdfair.backward"):
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
            with record_function("kdfair.optimizer"):
                opt.step()
            step += 1
            b = len(ys[0])
            loss_sum += losses.detach() * b  # NaN/inf propagate; checked once per epoch
            correct += (logits.detach().argmax(-1) == torch.stack(ys, 1)).sum(0)
            seen += b
        ips = seen / max(1e-9, time.perf_counter() - t_epoch)
        mean_loss = (loss_sum / max(1, seen)).tolist()
        train_acc = (correct / max(1, seen)).tolist()
        preds: list[torch.Tensor] | None = [] if on_val is not None else None
        val_acc = bank_accuracy(bank, val, device, precision, preds) if val is not None \
            else [None] * g
        extra = on_val(torch.cat(preds).numpy()) if on_val is not None and preds else [{}] * g
        for m in range(g):
            if m not in failed and not math.isfinite(mean_loss[m]):
                failed[m] = f"training loss became {mean_loss[m]} in epoch {epoch + 1}"
            histories[m].append({"epoch": epoch + 1, "loss": mean_loss[m],
                                 "train_acc": train_acc[m], "val_acc": val_acc[m],
                                 "lr": opt.param_groups[0]["lr"], "images_per_s": ips,
                                 **extra[m]})
        reporter.epoch(label, epoch + 1, sum(mean_loss) / g, ips * g)
        if len(failed) == g:
            break
    taps.close()
    teacher_logits.taps.close()
    return histories, failed


def _labelled(items: Iterable[Any], name: str) -> Iterator[Any]:
    """``items``, each one drawn inside a profiler range ``name`` (free when not profiling):
    the ranges ``kdfair.data``, ``.forward``, ``.teacher``, ``.loss``, ``.backward`` and
    ``.optimizer`` show where a step's time goes (``benchmarks/throughput.py --profile``)."""
    it = iter(items)
    while True:
        with record_function(name):
            item = next(it, _END)
        if item is _END:
            return
        yield item


_END = object()


class StudentTaps:
    """The output of each member's ``layers[m]`` (None: nothing tapped) at the last forward."""

    def __init__(self, bank: nn.Module, layers: list[str | None]):
        self.bank, self.layers = bank, layers
        owners = bank.models if isinstance(bank, ListBank) else [bank] * len(layers)
        self.owners = list(owners)
        self.taps = LayerTaps([(o, n) for o, n in zip(self.owners, layers, strict=True)
                               if n is not None], who="student")

    def take(self) -> list[torch.Tensor | None]:
        if not self.taps.modules:
            return [None] * len(self.layers)
        seen = {id(o): self.taps.take(o) for o in dict.fromkeys(self.owners)}
        out: list[torch.Tensor | None] = []
        for m, (owner, name) in enumerate(zip(self.owners, self.layers, strict=True)):
            f = None if name is None else seen[id(owner)][name]
            if f is not None and not isinstance(self.bank, ListBank):  # a grouped bank's block m
                g = len(self.layers)
                f = f.chunk(g, dim=1)[m] if f.ndim == 4 else f[:, m]
            out.append(f)
        return out

    def close(self) -> None:
        self.taps.close()


def evaluate(spec: RunSpec, model: nn.Module, data: SplitData, device: torch.device,
             parts: dict[str, Batches], history: list[dict[str, float]],
             wall_time_s: float, extra: dict[str, Any] | None = None,
             precision: str = "auto") -> TrainedRun:
    """Val and test predictions of a trained model (and on the test set's counterfactuals,
    where the data have them) at the run's ``precision``, and the run's metrics (which record
    the precision and whether deterministic algorithms were on)."""
    val_logits = predict(model, parts["val"], device, precision)
    test_logits = predict(model, parts["test"], device, precision)
    counterfactual = {a: predict(model, parts[counterfactual_part(a)], device, precision).numpy()
                      for a in data.counterfactuals}
    val_acc = float((val_logits.argmax(1) == data.val.y).float().mean()) if len(data.val) else None
    test_acc = float((test_logits.argmax(1) == data.test.y).float().mean())
    last = history[-1] if history else {}
    metrics = {
        "test_acc": test_acc, "val_acc": val_acc, "train_loss": last.get("loss"),
        "train_acc": last.get("train_acc"), "epochs": len(history),
        "wall_time_s": wall_time_s, "device": device_name(device),
        "images_per_s": last.get("images_per_s"), "history": history, "versions": _versions(),
        "precision": resolve_precision(precision, device),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        **(extra or {}),
    }
    return TrainedRun(spec, metrics, test_logits.numpy(), model.cpu(), history, counterfactual)


def counterfactual_part(attr: str) -> str:
    """The key of an attribute's counterfactual test inputs among a bundle's parts."""
    return f"counterfactual:{attr}"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        kd = version("kdfair")
    except PackageNotFoundError:
        kd = "unknown"
    return {"kdfair": kd, "torch": torch.__version__, "python": platform.python_version()}


def can_group(jobs: list[RunJob], data: SplitData) -> bool:
    """Whether these runs can train as one bank of several: same architecture, options and
    recipe, data on the device, and trained (not given)."""
    first = jobs[0].spec
    if not data.train.in_memory or len(jobs) < 2:
        return False
    if any(j.spec.given or j.init_weights is not None for j in jobs):
        return False
    return all(j.spec.arch == first.arch and j.spec.model_options == first.model_options
               and j.spec.train == first.train for j in jobs)


def _bank(members: list[nn.Module], spec: RunSpec, data: SplitData, device: torch.device,
          kind: str) -> nn.Module:
    """The members as one module: ``grouped`` convolutions or ``list`` (plain, side by side);
    ``auto`` is grouped on CUDA where the architecture has a bank."""
    if kind == "grouped" and len(members) == 1:  # a bank of one is the plain model
        kind = "list"
    if kind == "auto":
        grouped = device.type == "cuda" and len(members) > 1 and bankable(
            spec.arch, data.num_classes, data.input_shape, **spec.model_options)
        kind = "grouped" if grouped else "list"
    if kind == "list":
        return prepare_module(ListBank(members), device)
    bank = build_model(spec.arch, data.num_classes, data.input_shape, members=len(members),
                       **spec.model_options)
    return prepare_module(bank_from_members(bank, members), device)


def _objectives(jobs: list[RunJob], members: list[nn.Module], cfg: TrainConfig,
                train: Batches, device: torch.device) -> list[Objective]:
    """Each member's objective, its own parameters (if any) built from the member's seed."""
    objectives = [objective_for(j.spec, cfg.label_smoothing) for j in jobs]
    if all(type(o).setup is Objective.setup for o in objectives):
        return objectives
    example = next(iter(train.eval(batch_size=2)))
    for job, member, objective in zip(jobs, members, objectives, strict=True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(job.spec.seed, "method"))
            objective.setup(prepare_module(member, device), job.teacher, example)
        objective.to(device)
    return objectives


def _teachers(jobs: list[RunJob], seed_index: list[int], tables: dict[int, torch.Tensor],
              bank: nn.Module, data: SplitData, device: torch.device,
              layers: list[str | None]) -> TeacherLogits:
    teachers = [j.teacher for j in jobs]
    logits = TeacherLogits(teachers, seed_index, tables, layers=layers)
    if logits.teachers and logits.tables is None and not logits.taps.modules \
            and not isinstance(bank, ListBank):
        specs = {id(j.teacher): j.teacher_spec for j in jobs if j.teacher is not None}
        counts = [sum(1 for t, _ in logits.pairs if t == i) for i in range(len(logits.teachers))]
        logits.banked = teacher_bank(logits.teachers, [specs[id(t)] for t in logits.teachers],
                                     counts, data, device)
    return logits


def train_group(jobs: list[RunJob], data: SplitData, device: torch.device,
                parts: dict[str, Batches], reporter: Reporter,
                tables: dict[int, torch.Tensor], compile: bool = False,
                bank_kind: str = "auto", precision: str = "auto") -> list[TrainedRun | Exception]:
    """Train ``jobs`` (one, or several that ``can_group``) as one bank; one result or exception
    per job. A given teacher (``spec.given``) is only evaluated.

    ``bank_kind``: ``grouped`` (grouped convolutions), ``list`` (plain models side by side) or
    ``auto``. ``precision``: ``engine.precision`` (``auto``: bf16 autocast on CUDA, fp32
    elsewhere), for training, the teachers' logits and evaluation alike.
    """
    specs = [j.spec for j in jobs]
    g, cfg = len(jobs), TrainConfig.model_validate(specs[0].train)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(specs[0].seed, "global"))  # anything else drawing randomness
        members = [build_run_model(s, data) for s in specs]
        for job, member in zip(jobs, members, strict=True):
            if job.init_weights is not None:
                member.load_state_dict(job.init_weights)
        objectives = _objectives(jobs, members, cfg, parts["train"], device)
        bank = _bank(members, specs[0], data, device, bank_kind)
        seeds = sorted({s.seed for s in specs})
        seed_index = [seeds.index(s.seed) for s in specs]
        histories: list[list[dict[str, float]]] = [[] for _ in jobs]
        failed: dict[int, str] = {}
        if not all(s.given for s in specs):
            label = specs[0].run_id if g == 1 else f"{g} runs ({specs[0].arch})"
            t_layers = [o.teacher_layer for o in objectives]
            histories, failed = fit(
                bank, objectives,
                _teachers(jobs, seed_index, tables, bank, data, device, t_layers), seed_index,
                seeds, cfg,
                parts["train"], parts["val"] if len(parts["val"]) else None, device, reporter,
                label, torch.compile(bank) if compile else None, precision,
                on_val=validation_fairness(data.val.y.numpy(), data.val.attributes,
                                           data.num_classes))
    wall = time.perf_counter() - t0
    extra = {"group_size": g, "group_wall_time_s": wall} if g > 1 else None
    results: list[TrainedRun | Exception] = []
    for m, spec in enumerate(specs):
        if m in failed:
            results.append(RunFailed(f"{failed[m]}; {nonfinite_loss_hint(spec)}"))
            continue
        model = _member(bank, m, spec, data, device)
        results.append(evaluate(spec, model, data, device, parts, histories[m], wall / g, extra,
                                precision))
    return results


def _member(bank: nn.Module, m: int, spec: RunSpec, data: SplitData,
            device: torch.device) -> nn.Module:
    """Member ``m`` of a trained bank as a plain model on the device."""
    if isinstance(bank, ListBank):
        return bank.models[m]
    model = build_run_model(spec, data)
    model.load_state_dict(member_state(bank.cpu(), m))
    return prepare_module(model, device)


def teacher_table(teacher: nn.Module, train: Batches, device: torch.device,
                  precision: str = "auto") -> torch.Tensor:
    """The teacher's logits on every (unaugmented) training input, on the device, at the
    students' ``precision`` (what a live teacher pass inside the loop would give).

    Exact to reuse when the student's training inputs are not augmented: the frozen teacher then
    sees the same inputs every epoch, so its forward pass is done once per teacher, not per step.
    """
    return predict(teacher, train, device, precision).to(device)


def train_bundle(jobs: list[RunJob], data: SplitData, device: torch.device,
                 on_result: Callable[[RunJob, TrainedRun | Exception], None],
                 reporter: Reporter | None = None, grouped: bool | str = "auto",
                 max_group: int = 0, compile: bool = False, precision: str = "auto",
                 deterministic: bool = False) -> None:
    """Train every run of a bundle; each result (or the exception of a failed run) is handed to
    ``on_result`` as soon as it exists, so an interruption loses only the runs in progress.

    With ``grouped``, runs that can share a bank (``can_group``) train together, at most
    ``max_group`` at once (0: all); a group that does not fit the device is split in halves.
    ``"auto"`` groups on CUDA, and on a CPU only where members share live teacher passes.
    ``precision`` and ``deterministic``: ``engine.precision`` / ``engine.deterministic``
    (``device.engine_mode``), for the whole bundle; each run's metrics record both.
    """
    resolve_precision(precision, device)  # refused before anything trains
    with engine_mode(device, precision, deterministic):
        _train_bundle(jobs, data, device, on_result, reporter or Silent(), grouped, max_group,
                      compile, precision)


def _train_bundle(jobs: list[RunJob], data: SplitData, device: torch.device,
                  on_result: Callable[[RunJob, TrainedRun | Exception], None],
                  reporter: Reporter, grouped: bool | str, max_group: int, compile: bool,
                  precision: str) -> None:
    parts = {k: Batches(getattr(data, k), data, device) for k in ("train", "val", "test")}
    parts.update({counterfactual_part(a): Batches(p, data, device)
                  for a, p in data.counterfactuals.items()})
    tables: dict[int, torch.Tensor] = {}
    for job in jobs:
        cfg = TrainConfig.model_validate(job.spec.train)
        if job.teacher is not None and cfg.augment == "none" and data.train.in_memory:
            if id(job.teacher) not in tables:
                tables[id(job.teacher)] = teacher_table(job.teacher, parts["train"], device,
                                                        precision)
    if grouped == "auto":
        live_teacher = any(j.teacher is not None and id(j.teacher) not in tables for j in jobs)
        grouped = device.type == "cuda" or live_teacher
    size = max_group if max_group > 0 else len(jobs)
    if grouped and can_group(jobs, data):
        queue = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    else:
        queue = [[job] for job in jobs]
    while queue:
        group = queue.pop(0)
        try:
            results = train_group(group, data, device, parts, reporter, tables, compile,
                                  precision=precision)
        except torch.OutOfMemoryError as err:
            if len(group) == 1:  # recorded as failed, like any error of a run trained alone
                results = [err]
            else:
                half = (len(group) + 1) // 2
                log.warning("%d runs do not fit on %s together; training them in groups of %d",
                            len(group), device, half)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                queue[:0] = [group[:half], group[half:]]
                continue
        except (RunFailed, RuntimeError) as err:  # NaN loss, a runtime error: record, go on
            if len(group) > 1:
                raise
            results = [err]
        for job, result in zip(group, results, strict=True):
            reporter.finish(job.spec.run_id,
                            "failed" if isinstance(result, Exception) else "done")
            on_result(job, result)
