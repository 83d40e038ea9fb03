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


def fit_problem(state: dict[str, torch.Tensor], model: torch.nn.Module) -> str | None:
    """Why ``state`` cannot be loaded into ``model`` (strictly, as training loads it), or None:
    the first missing, unexpected or differently shaped tensor, and how many there are."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [f"{k} is {list(state[k].shape)}, the model's {list(want[k].shape)}"
              for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    parts = [f"{len(missing)} tensor(s) missing (e.g. {missing[0]})" if missing else "",
             f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
             f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
    return "; ".join(p for p in parts if p) or None


def check_fits(path: Path, state: dict[str, torch.Tensor], model: torch.nn.Module,
               arch: str) -> None:
    """Refuse, before anything trains, a checkpoint that does not fit the architecture: one
    line naming the file and the mismatch (a run would fail the same way every time)."""
    why = fit_problem(state, model)
    if why:
        raise DatasetError(f"teacher checkpoint {path} does not fit model {arch!r} with this "
                           f"data set's classes and inputs: {why}; give a checkpoint of that "
                           "architecture, or change teacher.model to the one it was saved from")
