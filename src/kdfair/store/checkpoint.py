"""Reading a teacher checkpoint given by the user (``model.checkpoint``): safetensors only."""

from __future__ import annotations

from pathlib import Path

import torch

from kdfair.errors import DatasetError

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file; DatasetError naming the file, the cause and the fix.

    Nothing is unpickled: a PyTorch pickle (.pt) is refused, not opened.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    fix = ("give model.checkpoint as a .safetensors file (convert a trusted .pt once with "
           "`safetensors.torch.save_file(torch.load(f, weights_only=True), out)`)")
    if not path.exists():
        raise DatasetError(f"teacher checkpoint {path} not found (model.checkpoint); {fix}")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise DatasetError(f"teacher checkpoint {path} is a pickle-based file, which kdfair "
                           f"never opens; {fix}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DatasetError(f"teacher checkpoint {path} is not a readable safetensors file "
                           f"({err}); {fix}") from None
