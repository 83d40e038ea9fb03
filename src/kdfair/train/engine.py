"""Training engine: ``train_bundle`` trains the runs of one bundle and hands back each result.

A bundle is a list of runs that share data and student architecture. Each run's initialisation,
data order and augmentation come from RNG streams derived from its own seed (``seeding``), so a
run's result never depends on what it was bundled with. In-memory (uint8) image sets stay on the
device and are augmented there; large sets stream through a DataLoader.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfair.config import TrainConfig
from kdfair.data.base import Part, SplitData
from kdfair.errors import RunFailed
from kdfair.models.registry import build_model
from kdfair.spec import RunSpec
from kdfair.train.augment import apply_augment, draw_augment, normalize
from kdfair.train.loss import kd_loss
from kdfair.train.seeding import derive_seed, generator

log = logging.getLogger("kdfair")


@dataclass
class RunJob:
    """A run to train; DS runs carry their (frozen, eval-mode) teacher."""

    spec: RunSpec
    teacher: nn.Module | None = None
    init_weights: dict[str, torch.Tensor] | None = None  # a teacher given, not trained
    teacher_spec: RunSpec | None = None  # lets a group bank several teachers of one architecture


@dataclass
class RunResult:
    spec: RunSpec
    metrics: dict[str, Any]
    logits: np.ndarray
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)


class Reporter(Protocol):
    def start(self, run_id: str, epochs: int) -> None: ...
    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None: ...
    def finish(self, run_id: str, status: str) -> None: ...


class _Silent:
    def start(self, run_id: str, epochs: int) -> None:
        pass

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        pass

    def finish(self, run_id: str, status: str) -> None:
        pass


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from kdfair.errors import ConfigError

        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible; use 'auto'")
    return torch.device(name)


def build_run_model(spec: RunSpec, data: SplitData) -> nn.Module:
    """The run's model, initialised from its own seed's "init" stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(spec.seed, "init"))
        opts = {k: v for k, v in spec.model_options.items() if k != "checkpoint"}
        return build_model(spec.arch, data.num_classes, data.input_shape, **opts)


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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class _Batches:
    """Normalised float batches of one part, on the device."""

    def __init__(self, part: Part, data: SplitData, device: torch.device):
        self.part, self.device = part, device
        if part.in_memory:
            self.x = part.x.to(device)  # type: ignore[union-attr]
            c = self.x.shape[1]
            self.mean = torch.tensor(data.mean[:c], device=device).view(1, -1, 1, 1)
            self.std = torch.tensor(data.std[:c], device=device).view(1, -1, 1, 1)
        self.y = part.y.to(device)

    def train(self, cfg: TrainConfig, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        if not self.part.in_memory:
            yield from self._stream(cfg, seed, epoch)
            return
        for idx, off, flips in self.draws(cfg, seed, epoch):
            yield self.batch(idx, off, flips, cfg.crop_padding), self.y[idx], idx

    def draws(self, cfg: TrainConfig, seed: int, epoch: int):
        """Per step: the indices, crop offsets and flips of one epoch, from the seed's streams.

        The whole epoch is drawn on the CPU at once and moved to the device in one copy each.
        """
        n, bs = len(self.part), cfg.batch_size
        used = n - n % bs if n >= bs else n  # drop the ragged last batch (BatchNorm needs > 1)
        order = torch.randperm(n, generator=generator(seed, f"order/{epoch}"))[:used]
        crop, flip = cfg.augment in ("crop_flip", "crop"), cfg.augment in ("crop_flip", "flip")
        off, flips = draw_augment(used, cfg.crop_padding, crop, flip,
                                  generator(seed, f"augment/{epoch}"))
        order, off, flips = (None if t is None else t.to(self.device) for t in (order, off, flips))
        for i in range(0, used, bs):
            yield (order[i : i + bs], None if off is None else off[i : i + bs],
                   None if flips is None else flips[i : i + bs])

    def batch(self, idx: torch.Tensor, off, flips, padding: int) -> torch.Tensor:
        """The augmented, normalised float batch of inputs ``idx``."""
        return normalize(apply_augment(self.x[idx], off, flips, padding), self.mean, self.std)

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.part)
        return max(1, n // batch_size) if n >= batch_size else 1

    def _stream(self, cfg: TrainConfig, seed: int, epoch: int):
        loader = torch.utils.data.DataLoader(
            self.part.dataset, batch_size=cfg.batch_size, shuffle=True,
            drop_last=len(self.part) > cfg.batch_size,  # as in memory: a lone batch is kept
            generator=generator(seed, f"order/{epoch}"), num_workers=_workers(self.device),
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            collate_fn=getattr(self.part.dataset, "collate", None))
        for xb, yb in loader:
            yield _to(xb, self.device), _to(yb, self.device), None

    def eval(self, batch_size: int = 512) -> Iterator[torch.Tensor]:
        if self.part.in_memory:
            for i in range(0, len(self.part), batch_size):
                yield normalize(self.x[i : i + batch_size], self.mean, self.std)
            return
        loader = torch.utils.data.DataLoader(
            self.part.dataset, batch_size=batch_size, shuffle=False,
            num_workers=_workers(self.device),
            collate_fn=getattr(self.part.dataset, "collate", None))
        for xb, _ in loader:
            yield _to(xb, self.device)


def _to(x, device: torch.device):
    """Move a batch (a tensor, or a dict of tensors such as tokenised text) to the device."""
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def _workers(device: torch.device) -> int:
    env = os.environ.get("KDFAIR_WORKERS")
    if env is not None:
        return int(env)
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


@torch.no_grad()
def predict(model: nn.Module, batches: _Batches, device: torch.device) -> torch.Tensor:
    """Logits (float32, on the CPU) of ``model`` on every input of a part, in order."""
    model.eval()
    out = []
    for xb in batches.eval():
        with _autocast(device):
            out.append(model(_layout(xb, device)).float().cpu())
    return torch.cat(out)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _layout(x, device: torch.device):
    """channels_last for image batches on CUDA; anything else as it is."""
    if device.type == "cuda" and isinstance(x, torch.Tensor) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def teacher_table(teacher: nn.Module, train: _Batches, device: torch.device) -> torch.Tensor:
    """The teacher's logits on every (unaugmented) training input, on the device.

    Exact to reuse when the student's training inputs are not augmented: the frozen teacher then
    sees the same inputs every epoch, so its forward pass is done once per teacher, not per step.
    """
    return predict(teacher, train, device).to(device)


def train_run(job: RunJob, data: SplitData, device: torch.device, parts: dict[str, _Batches],
              reporter: Reporter, table: torch.Tensor | None = None) -> RunResult:
    """Train (or, for a given teacher, only evaluate) one run."""
    spec, cfg = job.spec, TrainConfig.model_validate(job.spec.train)
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(spec.seed, "global"))  # anything else drawing randomness
        model = build_run_model(spec, data)
        if job.init_weights is not None:
            model.load_state_dict(job.init_weights)
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        if not spec.given:
            history = _fit(model, job, cfg, parts["train"], device, reporter, table)
    return evaluate(spec, model, data, device, parts, history, time.perf_counter() - t0)


def evaluate(spec: RunSpec, model: nn.Module, data: SplitData, device: torch.device,
             parts: dict[str, _Batches], history: list[dict[str, float]],
             wall_time_s: float, extra: dict[str, Any] | None = None) -> RunResult:
    """Val and test predictions of a trained model, and the run's metrics."""
    val_logits = predict(model, parts["val"], device)
    test_logits = predict(model, parts["test"], device)
    val_acc = float((val_logits.argmax(1) == data.val.y).float().mean()) if len(data.val) else None
    test_acc = float((test_logits.argmax(1) == data.test.y).float().mean())
    last = history[-1] if history else {}
    metrics = {
        "test_acc": test_acc, "val_acc": val_acc, "train_loss": last.get("loss"),
        "train_acc": last.get("train_acc"), "epochs": len(history),
        "wall_time_s": wall_time_s, "device": _device_name(device),
        "images_per_s": last.get("images_per_s"), "history": history, "versions": _versions(),
        **(extra or {}),
    }
    return RunResult(spec, metrics, test_logits.numpy(), model.cpu(), history)


def _fit(model: nn.Module, job: RunJob, cfg: TrainConfig, train: _Batches,
         device: torch.device, reporter: Reporter,
         table: torch.Tensor | None = None) -> list[dict[str, float]]:
    spec = job.spec
    opt = make_optimizer(model, cfg)
    steps_per_epoch = train.steps_per_epoch(cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    step, history = 0, []
    reporter.start(spec.run_id, cfg.epochs)
    for epoch in range(cfg.epochs):
        model.train()
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for xb, yb, idx in train.train(cfg, spec.seed, epoch):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, total, steps_per_epoch, cfg)
            xb = _layout(xb, device)
            with _autocast(device):
                logits = model(xb)
                if spec.role == "ds":
                    if table is not None:
                        t_logits = table[idx]
                    else:
                        with torch.no_grad():
                            t_logits = job.teacher(xb)  # type: ignore[misc]
                    loss = kd_loss(logits, t_logits, yb, spec.temperature, spec.alpha,
                                   spec.t2_scaling, cfg.label_smoothing)
                else:
                    loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.detach() * len(yb)  # NaN/inf propagate; checked once per epoch
            correct += (logits.detach().argmax(-1) == yb).sum()
            seen += len(yb)
        mean_loss = float(loss_sum) / max(1, seen)
        if not math.isfinite(mean_loss):
            raise RunFailed(f"training loss became {mean_loss} in epoch {epoch + 1}; "
                            f"try a lower learning rate (train.lr = {cfg.lr})")
        ips = seen / max(1e-9, time.perf_counter() - t_epoch)
        history.append({"epoch": epoch + 1, "loss": mean_loss, "train_acc": float(correct) / seen,
                        "lr": opt.param_groups[0]["lr"], "images_per_s": ips})
        reporter.epoch(spec.run_id, epoch + 1, mean_loss, ips)
    return history


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        kd = version("kdfair")
    except PackageNotFoundError:
        kd = "unknown"
    return {"kdfair": kd, "torch": torch.__version__, "python": platform.python_version()}


def train_bundle(jobs: list[RunJob], data: SplitData, device: torch.device,
                 on_result: Callable[[RunJob, RunResult | Exception], None],
                 reporter: Reporter | None = None, grouped: bool | str = "auto",
                 max_group: int = 0, compile: bool = False) -> None:
    """Train every run of a bundle; each result (or the exception of a failed run) is handed to
    ``on_result`` as soon as it exists, so an interruption loses only the runs in progress.

    With ``grouped``, runs that can share a bank (``grouped.can_group``) train together, at most
    ``max_group`` at once (0: all); a group that does not fit the device is split in halves.
    ``"auto"`` groups on CUDA, and on a CPU only where members share live teacher passes.
    """
    from kdfair.train.grouped import can_group, train_group

    reporter = reporter or _Silent()
    parts = {k: _Batches(getattr(data, k), data, device) for k in ("train", "val", "test")}
    tables: dict[int, torch.Tensor] = {}
    for job in jobs:
        cfg = TrainConfig.model_validate(job.spec.train)
        if job.teacher is not None and cfg.augment == "none" and data.train.in_memory:
            if id(job.teacher) not in tables:
                tables[id(job.teacher)] = teacher_table(job.teacher, parts["train"], device)

    def one(job: RunJob) -> None:
        try:
            result: RunResult | Exception = train_run(job, data, device, parts, reporter,
                                                      tables.get(id(job.teacher)))
        except (RunFailed, RuntimeError) as err:  # NaN loss, out of memory, …: record, go on
            result = err
        reporter.finish(job.spec.run_id, "failed" if isinstance(result, Exception) else "done")
        on_result(job, result)

    if grouped == "auto":
        live_teacher = any(j.teacher is not None and id(j.teacher) not in tables for j in jobs)
        grouped = device.type == "cuda" or live_teacher
    if not grouped or not can_group(jobs, data):
        for job in jobs:
            one(job)
        return
    size = max_group if max_group > 0 else len(jobs)
    queue = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    while queue:
        group = queue.pop(0)
        if len(group) == 1:
            one(group[0])
            continue
        try:
            results = train_group(group, data, device, parts, reporter, tables, compile)
        except torch.OutOfMemoryError:
            half = (len(group) + 1) // 2
            log.warning("%d runs do not fit on %s together; training them in groups of %d",
                        len(group), device, half)
            torch.cuda.empty_cache()
            queue[:0] = [group[:half], group[half:]]
            continue
        for job, result in zip(group, results, strict=True):
            reporter.finish(job.spec.run_id,
                            "failed" if isinstance(result, Exception) else "done")
            on_result(job, result)
