"""Layers that hold a bank of G independent members in one module.

Member m's activations occupy channel block m of a [B, G*C, H, W] tensor (grouped convolutions,
BatchNorm over G*C channels — its statistics are per channel, hence exact per member) and index m of
a [B, G, F] tensor (per-member linear layers). Every parameter and buffer of a bank is the
concatenation along dim 0 of its members' tensors, so a member can be taken out or put in
(``member_state`` / ``bank_from_members``) and G = 1 is exactly the plain model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class BankConv2d(nn.Conv2d):
    """G independent convolutions, each C_in -> C_out, as one grouped convolution."""

    def __init__(self, members: int, cin: int, cout: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__(members * cin, members * cout, kernel_size, stride=stride,
                         padding=padding, groups=members, bias=bias)
        self.members = members


class BankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over G*C channels: per-channel statistics are per-member statistics."""

    def __init__(self, members: int, channels: int):
        super().__init__(members * channels)
        self.members = members


class BankLinear(nn.Module):
    """G independent linear layers: [B, G, F_in] -> [B, G, F_out]."""

    def __init__(self, members: int, fin: int, fout: int, bias: bool = True):
        super().__init__()
        self.members = members
        self.weight = nn.Parameter(torch.empty(members, fout, fin))
        self.bias = nn.Parameter(torch.empty(members, fout)) if bias else None
        bound = 1 / math.sqrt(fin)
        for m in range(members):  # same distribution as nn.Linear's default init
            nn.init.kaiming_uniform_(self.weight[m], a=math.sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("bgi,goi->bgo", x, self.weight)
        return y + self.bias if self.bias is not None else y


class ListBank(nn.Module):
    """G plain models side by side: one input per member -> [B, G, K].

    Mathematically the same as a grouped bank; used where grouped convolutions cost more than
    running the members one after another (on a CPU), where an architecture has no bank, or
    where inputs are not images (tokenised text). G = 1 is the plain model.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        self.members = len(models)
        self.models = nn.ModuleList(models)

    def forward(self, xs: Sequence) -> torch.Tensor:
        return torch.stack([m(x) for m, x in zip(self.models, xs, strict=True)], dim=1)


def split_members(x: torch.Tensor, members: int) -> torch.Tensor:
    """[B, G*C, ...] -> [B, G, C*...] (flattened per member)."""
    return x.reshape(x.shape[0], members, -1)


def member_state(bank: nn.Module, m: int) -> dict[str, torch.Tensor]:
    """State dict of member ``m`` as a plain (G = 1) model of the same architecture."""
    if isinstance(bank, ListBank):
        return {k: v.clone() for k, v in bank.models[m].state_dict().items()}
    g = bank.members  # type: ignore[attr-defined]
    out = {}
    for k, v in bank.state_dict().items():
        out[k] = v.clone() if v.ndim == 0 else v.chunk(g, dim=0)[m].clone()
    return out


def bank_from_members(bank: nn.Module, members: Sequence[nn.Module]) -> nn.Module:
    """Load ``bank`` (G members) with the weights and buffers of G plain models, in order."""
    states = [mod.state_dict() for mod in members]
    merged = {}
    for k, v in bank.state_dict().items():
        merged[k] = states[0][k].clone() if v.ndim == 0 else torch.cat([s[k] for s in states], 0)
    bank.load_state_dict(merged)
    return bank


def pad_channels(x: torch.Tensor, members: int, extra: int) -> torch.Tensor:
    """Zero-pad each member's channel block by ``extra`` channels on both sides."""
    b, gc, h, w = x.shape
    y = x.reshape(b, members, gc // members, h, w)
    y = F.pad(y, (0, 0, 0, 0, extra, extra))
    return y.reshape(b, -1, h, w)
