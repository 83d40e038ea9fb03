"""What depends on the training device: which one, its precision and determinism settings, and
memory layout on CUDA."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Literal

import torch

from kdfair.errors import SETTING, ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible; use 'auto'")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> Literal["fp32", "bf16"]:
    """``engine.precision`` on ``device``: ``auto`` is bf16 on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"{SETTING} must be auto, fp32 or bf16; got {precision!r}",
                          setting="engine.precision")
    return precision  # type: ignore[return-value]


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast where ``precision`` resolves to bf16; in fp32 no autocast region at all."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def engine_mode(device: torch.device, precision: str = "auto",
                deterministic: bool = False) -> Iterator[None]:
    """The process-wide numerics of training for the block, restored after it.

    fp32 means fp32: on CUDA, TF32 (on by default for cuDNN convolutions) is turned off.
    ``deterministic``: cuDNN's deterministic algorithms, no benchmark autotuning, and
    ``torch.use_deterministic_algorithms`` (warning, not failing, where an operation has no
    deterministic version, such as some pooling backward passes on CUDA).
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if device.type == "cuda" and resolve_precision(precision, device) == "fp32":
            cudnn.allow_tf32 = matmul.allow_tf32 = False
        if deterministic:
            if device.type == "cuda":  # cuBLAS reads it when its first handle is made
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            cudnn.deterministic, cudnn.benchmark = True, False
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark = before[:4]
        torch.use_deterministic_algorithms(before[4], warn_only=before[5])


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
