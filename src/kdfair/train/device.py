"""What depends on the training device: which one, mixed precision and memory layout on CUDA."""

from __future__ import annotations

import platform

import torch

from kdfair.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible; use 'auto'")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool | None = None):
    """bf16 autocast on CUDA (or where ``enabled`` forces it); a no-op elsewhere."""
    on = device.type == "cuda" if enabled is None else enabled
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def channels_last(x):
    """channels_last for image batches on CUDA; anything else as it is."""
    if isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_cuda:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to the device, channels_last on CUDA."""
    module.to(device)
    if device.type == "cuda":
        module.to(memory_format=torch.channels_last)
    return module


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
