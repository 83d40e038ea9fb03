"""On-device augmentation of uint8 image batches: random crop with padding, horizontal flip.

The random draws (offsets, flips) come from a CPU generator, so a run's augmentation is the same
on every device; the pixel work happens wherever the batch lives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_augment(n: int, padding: int, crop: bool, flip: bool, gen: torch.Generator):
    """Per-image crop offsets [n, 2] in [0, 2·padding] and flip flags [n]."""
    off = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen) if crop and padding else None
    flips = torch.rand(n, generator=gen) < 0.5 if flip else None
    return off, flips


def apply_augment(x: torch.Tensor, off: torch.Tensor | None, flips: torch.Tensor | None,
                  padding: int) -> torch.Tensor:
    """Crop each image of ``x`` [B, C, H, W] at its offset after zero padding; flip where asked."""
    b, _, h, w = x.shape
    if off is not None:
        xp = F.pad(x, (padding, padding, padding, padding))
        off = off.to(x.device)
        rows = off[:, 0:1] + torch.arange(h, device=x.device)  # [B, H]
        cols = off[:, 1:2] + torch.arange(w, device=x.device)  # [B, W]
        bi = torch.arange(b, device=x.device)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flips is not None:
        x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float, scaled to [0, 1] and standardised per channel."""
    return (x.float().div_(255) - mean) / std
