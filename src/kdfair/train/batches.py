"""Batches of one data part on the training device: the only branch between in-memory and
streamed data sets.

In-memory (uint8) image sets live on the device; each epoch's order and augmentation are drawn on
the CPU from the run seed's streams, copied once, and applied on the device. Large sets (and text)
stream through a DataLoader whose order comes from the same stream. Either way a step yields, for
each distinct seed of a group, that seed's batch — runs with one seed see the same batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from kdfair.config import TrainConfig
from kdfair.data.base import Part, SplitData
from kdfair.train.augment import apply_augment, draw_augment, normalize
from kdfair.train.seeding import generator

Inputs = torch.Tensor | dict[str, torch.Tensor]  # an image batch, or a tokenised text batch


@dataclass
class Step:
    """One optimiser step's batches, one per distinct seed (in the order of ``seeds``)."""

    x: list[Inputs]
    y: list[torch.Tensor]
    idx: list[torch.Tensor] | None  # positions in the part (in-memory only: teacher tables)


class Batches:
    """Normalised float batches of one part, on the device."""

    def __init__(self, part: Part, data: SplitData, device: torch.device):
        self.part, self.device = part, device
        if part.in_memory:
            self.x = part.x.to(device)  # type: ignore[union-attr]
            c = self.x.shape[1]
            self.mean = torch.tensor(data.mean[:c], device=device).view(1, -1, 1, 1)
            self.std = torch.tensor(data.std[:c], device=device).view(1, -1, 1, 1)
        self.y = part.y.to(device)

    def __len__(self) -> int:
        return len(self.part)

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.part)
        return max(1, n // batch_size) if n >= batch_size else 1

    def epoch(self, cfg: TrainConfig, seeds: list[int], epoch: int) -> Iterator[Step]:
        """The steps of one epoch for each of ``seeds`` (their streams), side by side."""
        if not self.part.in_memory:
            loaders = [self._loader(cfg, s, epoch) for s in seeds]
            for pairs in zip(*loaders, strict=True):
                yield Step([to_device(x, self.device) for x, _ in pairs],
                           [to_device(y, self.device) for _, y in pairs], None)
            return
        streams = [self._draws(cfg, s, epoch) for s in seeds]
        for draws in zip(*streams, strict=True):
            idx = torch.stack([d[0] for d in draws])  # [S, B]
            off = torch.cat([d[1] for d in draws]) if draws[0][1] is not None else None
            flips = torch.cat([d[2] for d in draws]) if draws[0][2] is not None else None
            x = self._augmented(idx.reshape(-1), off, flips, cfg.crop_padding)  # all seeds at once
            yield Step(list(x.view(*idx.shape, *x.shape[1:]).unbind(0)), list(self.y[idx]),
                       list(idx))

    def _draws(self, cfg: TrainConfig, seed: int, epoch: int):
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

    def _augmented(self, idx: torch.Tensor, off, flips, padding: int) -> torch.Tensor:
        return normalize(apply_augment(self.x[idx], off, flips, padding), self.mean, self.std)

    def _loader(self, cfg: TrainConfig, seed: int, epoch: int) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.part.dataset, batch_size=cfg.batch_size, shuffle=True,
            drop_last=len(self.part) > cfg.batch_size,  # as in memory: a lone batch is kept
            generator=generator(seed, f"order/{epoch}"), num_workers=loader_workers(self.device),
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            collate_fn=getattr(self.part.dataset, "collate", None))

    def eval(self, batch_size: int = 512) -> Iterator[Inputs]:
        """Every input of the part, in order, unaugmented."""
        if self.part.in_memory:
            for i in range(0, len(self.part), batch_size):
                yield normalize(self.x[i : i + batch_size], self.mean, self.std)
            return
        loader = torch.utils.data.DataLoader(
            self.part.dataset, batch_size=batch_size, shuffle=False,
            num_workers=loader_workers(self.device),
            generator=torch.Generator(),  # its worker seed must not draw from the global stream
            collate_fn=getattr(self.part.dataset, "collate", None))
        for xb, _ in loader:
            yield to_device(xb, self.device)


def to_device(x: Inputs, device: torch.device) -> Inputs:
    """Move a batch (a tensor, or a dict of tensors such as tokenised text) to the device."""
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def loader_workers(device: torch.device) -> int:
    """DataLoader worker processes: ``$KDFAIR_WORKERS``, else up to 8 on CUDA, none on a CPU."""
    env = os.environ.get("KDFAIR_WORKERS")
    if env is not None:
        return int(env)
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
