"""Grouped training: G runs of one student architecture as one banked network.

On CUDA the bank is one network of grouped convolutions (``models.bank``); on a CPU, where
grouped convolutions cost more per image than plain ones, it is the G plain models side by side
(``ListBank``) — the same computation either way.

Member m is initialised from its own seed, sees the batches of its own seed's streams, and is
optimised on its own loss (KD at its own T and alpha, or cross-entropy for the NDS). The member
losses are summed: their parameters are disjoint, so each gets exactly its own gradient, and the
optimisers kdfair uses act elementwise, so each member's step is the step it would take alone.
Runs with the same seed see the same batches, so each batch is drawn and augmented once per
distinct seed, and each teacher's forward pass is done once per distinct seed.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfair.config import TrainConfig
from kdfair.data.base import SplitData
from kdfair.errors import RunFailed
from kdfair.models.bank import ListBank, bank_from_members, member_state
from kdfair.models.registry import build_model
from kdfair.train.engine import (
    Reporter,
    RunJob,
    RunResult,
    _autocast,
    _Batches,
    _layout,
    build_run_model,
    evaluate,
    lr_factor,
    make_optimizer,
)


def can_group(jobs: list[RunJob], data: SplitData) -> bool:
    """Whether these runs can train together: same architecture, options and recipe, data on
    the device, and trained (not given)."""
    first = jobs[0].spec
    if not data.train.in_memory or len(jobs) < 2:
        return False
    if any(j.spec.given or j.init_weights is not None for j in jobs):
        return False
    same = all(j.spec.arch == first.arch and j.spec.model_options == first.model_options
               and j.spec.train == first.train for j in jobs)
    return same


def bankable(arch: str, data: SplitData, options: dict) -> bool:
    """Whether the architecture's factory builds grouped banks (``members`` > 1)."""
    try:
        bank = build_model(arch, data.num_classes, data.input_shape, members=2, **options)
    except Exception:  # noqa: BLE001 - any factory refusing members > 1 means "no bank"
        return False
    return getattr(bank, "members", 1) == 2


def member_losses(logits: torch.Tensor, labels: torch.Tensor, t_logits: torch.Tensor | None,
                  temps: torch.Tensor, alphas: torch.Tensor, scales: torch.Tensor,
                  label_smoothing: float) -> torch.Tensor:
    """Per-member loss [G] for logits [B, G, K], labels [B, G], teacher logits [B, G, K].

    Member m: alpha_m · scale_m · KL(softmax(t/T_m) ‖ softmax(s/T_m)) + (1 − alpha_m) · CE;
    NDS members have alpha 0. Same arithmetic as ``kd_loss`` per member.
    """
    b, g, k = logits.shape
    logits = logits.float()
    hard = F.cross_entropy(logits.reshape(b * g, k), labels.reshape(b * g),
                           label_smoothing=label_smoothing, reduction="none").view(b, g).mean(0)
    if t_logits is None:
        return hard
    t = temps.view(1, g, 1)
    log_ps = F.log_softmax(logits / t, dim=-1)
    log_pt = F.log_softmax(t_logits.float() / t, dim=-1)
    soft = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean(0)
    return alphas * scales * soft + (1 - alphas) * hard


def train_group(jobs: list[RunJob], data: SplitData, device: torch.device,
                parts: dict[str, _Batches], reporter: Reporter,
                tables: dict[int, torch.Tensor], compile: bool = False,
                bank_kind: str = "auto") -> list[RunResult | Exception]:
    """Train ``jobs`` (see ``can_group``) as one bank; one result or exception per job.

    ``bank_kind``: ``grouped`` (grouped convolutions), ``list`` (plain models side by side) or
    ``auto`` (grouped on CUDA where the architecture has a bank, else list).
    """
    specs = [j.spec for j in jobs]
    g, cfg = len(jobs), TrainConfig.model_validate(specs[0].train)
    t0 = time.perf_counter()
    members = [build_run_model(s, data) for s in specs]
    if bank_kind == "auto":
        cuda_bank = device.type == "cuda" and bankable(specs[0].arch, data, specs[0].model_options)
        bank_kind = "grouped" if cuda_bank else "list"
    if bank_kind == "grouped":
        bank = build_model(specs[0].arch, data.num_classes, data.input_shape, members=g,
                           **specs[0].model_options)
        bank_from_members(bank, members)
    else:  # on a CPU plain convolutions are cheaper than grouped ones: same maths, member-wise
        bank = ListBank(members)
    bank.to(device)
    if device.type == "cuda":
        bank.to(memory_format=torch.channels_last)
    opt = make_optimizer(bank, cfg)
    forward = torch.compile(bank) if compile else bank

    seeds = sorted({s.seed for s in specs})
    seed_of = torch.tensor([seeds.index(s.seed) for s in specs], device=device)
    teachers = list({id(j.teacher): j.teacher for j in jobs if j.teacher is not None}.values())
    distil = bool(teachers)
    temps = torch.tensor([s.temperature or 1.0 for s in specs], device=device)
    alphas = torch.tensor([s.alpha if s.role == "ds" else 0.0 for s in specs], device=device)
    scales = torch.tensor([(s.temperature or 1.0) ** 2 if s.t2_scaling else 1.0 for s in specs],
                          device=device)
    # teacher logits for member m come from (teacher of m, seed of m)
    pairs = sorted({(teachers.index(j.teacher), seed_of[i].item())
                    for i, j in enumerate(jobs) if j.teacher is not None})
    pair_of = torch.tensor([pairs.index((teachers.index(j.teacher), seed_of[i].item()))
                            if j.teacher is not None else 0 for i, j in enumerate(jobs)],
                           device=device)
    use_tables = distil and all(id(t) in tables for t in teachers)
    t_bank = None
    if distil and not use_tables and bank_kind == "grouped":
        t_bank = teacher_bank(jobs, teachers, pairs, data, device)

    train = parts["train"]
    steps = train.steps_per_epoch(cfg.batch_size)
    total, step = steps * cfg.epochs, 0
    failed: dict[int, str] = {}
    histories: list[list[dict[str, float]]] = [[] for _ in jobs]
    label = f"{g} runs ({specs[0].arch})"
    reporter.start(label, cfg.epochs)
    for epoch in range(cfg.epochs):
        bank.train()
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros(g, device=device)
        correct = torch.zeros(g, device=device)
        seen = 0
        streams = [train.draws(cfg, s, epoch) for s in seeds]
        for draws in zip(*streams, strict=True):
            for pg in opt.param_groups:
                pg["lr"] = cfg.lr * lr_factor(step, total, steps, cfg)
            idx = torch.stack([d[0] for d in draws])  # [S, B]
            n_s, b = idx.shape
            off = torch.cat([d[1] for d in draws]) if draws[0][1] is not None else None
            flips = torch.cat([d[2] for d in draws]) if draws[0][2] is not None else None
            xs = train.batch(idx.reshape(-1), off, flips, cfg.crop_padding)  # [S*B, C, H, W]
            xs = xs.view(n_s, b, *xs.shape[1:])
            ys = train.y[idx]  # [S, B]
            x = xs[seed_of].transpose(0, 1).reshape(b, -1, *xs.shape[3:])  # [B, G*C, H, W]
            y = ys[seed_of].t()  # [B, G]
            with _autocast(device):
                logits = forward(_layout(x, device))  # [B, G, K]
                t_logits = None
                if distil:
                    t_out = _teacher_logits(pairs, teachers, xs, idx, tables, use_tables, device,
                                            t_bank)
                    t_logits = t_out[pair_of].transpose(0, 1)  # [B, G, K]
                losses = member_losses(logits, y, t_logits, temps, alphas, scales,
                                       cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            step += 1
            loss_sum += losses.detach() * b
            correct += (logits.detach().argmax(-1) == y).sum(0)
            seen += b
        mean_loss = (loss_sum / max(1, seen)).tolist()
        acc = (correct / max(1, seen)).tolist()
        ips = seen / max(1e-9, time.perf_counter() - t_epoch)
        for m in range(g):
            if m not in failed and not math.isfinite(mean_loss[m]):
                failed[m] = (f"training loss became {mean_loss[m]} in epoch {epoch + 1}; "
                             f"try a lower learning rate (train.lr = {cfg.lr})")
            histories[m].append({"epoch": epoch + 1, "loss": mean_loss[m], "train_acc": acc[m],
                                 "lr": opt.param_groups[0]["lr"], "images_per_s": ips})
        reporter.epoch(label, epoch + 1, sum(mean_loss) / g, ips * g)
        if len(failed) == g:
            break
    wall = time.perf_counter() - t0
    results: list[RunResult | Exception] = []
    bank = bank.cpu()
    for m, spec in enumerate(specs):
        if m in failed:
            results.append(RunFailed(failed[m]))
            continue
        model = build_run_model(spec, data)
        model.load_state_dict(member_state(bank, m))
        model.to(device)
        results.append(evaluate(spec, model, data, device, parts, histories[m], wall / g,
                                {"group_size": g, "group_wall_time_s": wall}))
    return results


def teacher_bank(jobs: list[RunJob], teachers: list[nn.Module], pairs: list[tuple[int, int]],
                 data: SplitData, device: torch.device) -> nn.Module | None:
    """Several teachers of one architecture as one frozen grouped bank (one forward pass per
    step instead of one per teacher), where each teacher serves the same number of seeds."""
    specs = {id(j.teacher): j.teacher_spec for j in jobs if j.teacher is not None}
    if len(teachers) < 2 or any(specs[id(t)] is None for t in teachers):
        return None
    first = specs[id(teachers[0])]
    same = all(specs[id(t)].arch == first.arch  # type: ignore[union-attr]
               and specs[id(t)].model_options == first.model_options  # type: ignore[union-attr]
               for t in teachers)
    counts = {sum(1 for t, _ in pairs if t == ti) for ti in range(len(teachers))}
    if not same or len(counts) != 1 or not bankable(first.arch, data, first.model_options):
        return None
    bank = build_model(first.arch, data.num_classes, data.input_shape, members=len(teachers),
                       **first.model_options)
    bank_from_members(bank, teachers)
    bank.to(device).eval()
    if device.type == "cuda":
        bank.to(memory_format=torch.channels_last)
    return bank.requires_grad_(False)


@torch.no_grad()
def _teacher_logits(pairs: list[tuple[int, int]], teachers: list[nn.Module], xs: torch.Tensor,
                    idx: torch.Tensor, tables: dict[int, torch.Tensor], use_tables: bool,
                    device: torch.device, t_bank: nn.Module | None = None) -> torch.Tensor:
    """Logits [P, B, K] of each distinct (teacher, seed) pair on that seed's batch: one forward
    per teacher over the batches of all its seeds, one forward of the teacher bank when there is
    one, or a lookup when inputs are unaugmented."""
    out: dict[tuple[int, int], torch.Tensor] = {}
    if t_bank is not None:
        mine = [[s for t, s in pairs if t == ti] for ti in range(len(teachers))]
        n, b = len(mine[0]), xs.shape[1]
        x = torch.stack([xs[m].reshape(n * b, *xs.shape[2:]) for m in mine], 1)  # [nB, T, ...]
        logits = t_bank(_layout(x.reshape(n * b, -1, *xs.shape[3:]), device))  # [nB, T, K]
        for ti, m in enumerate(mine):
            for k, s in enumerate(m):
                out[(ti, s)] = logits[k * b : (k + 1) * b, ti]
        return torch.stack([out[p] for p in pairs])
    for ti, teacher in enumerate(teachers):
        mine = [s for t, s in pairs if t == ti]
        if use_tables:
            table = tables[id(teacher)]
            for s in mine:
                out[(ti, s)] = table[idx[s]]
            continue
        x = xs[mine].reshape(-1, *xs.shape[2:])
        logits = teacher(_layout(x, device)).view(len(mine), xs.shape[1], -1)
        for k, s in enumerate(mine):
            out[(ti, s)] = logits[k]
    return torch.stack([out[p] for p in pairs])
