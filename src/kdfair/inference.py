"""One model over one data loader, in order: the logits and labels an audit needs, from models
trained anywhere (torchdistill, mdistiller, a Hugging Face ``Trainer``, plain PyTorch)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from kdfair.errors import ConfigError

_LABEL_KEYS = ("labels", "label", "targets", "target", "y")


def _logits(out: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor, the first item of a tuple (mdistiller's
    ``(logits, features)``), or ``.logits`` / ``["logits"]`` (Hugging Face outputs)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, Mapping):
        logits = out.get("logits")
    if logits is None and isinstance(out, tuple | list) and out:
        logits = out[0]
    if not isinstance(logits, torch.Tensor):
        raise ConfigError(f"the model returned {type(out).__name__}, not logits: return a "
                          "tensor, a tuple with the logits first, or an output with .logits")
    return logits


def _split(batch: Any) -> tuple[Any, torch.Tensor | None]:
    """A batch as (model inputs, labels or None): ``(x, y, …)``, a dict (labels under
    ``labels``/``label``/``target``; the other entries are the model's keyword inputs) or ``x``."""
    if isinstance(batch, Mapping):
        key = next((k for k in _LABEL_KEYS if k in batch), None)
        return {k: v for k, v in batch.items() if k != key}, (batch[key] if key else None)
    if isinstance(batch, tuple | list):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


_SHUFFLING = (torch.utils.data.RandomSampler, torch.utils.data.SubsetRandomSampler,
              torch.utils.data.WeightedRandomSampler)


def _check_order(loader: Iterable[Any]) -> None:
    """Refuse a loader whose sampler draws the inputs out of order (shuffle=True, a random or
    weighted sampler, a DistributedSampler that shuffles)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, _SHUFFLING) or getattr(sampler, "shuffle", False) is True:
        raise ConfigError("the data loader shuffles (shuffle=True): predictions must follow "
                          "the data set's order, row i ↔ label i ↔ group i; build it with "
                          f"shuffle=False and no random sampler (it has a "
                          f"{type(sampler).__name__})")


def predict(model: nn.Module, loader: Iterable[Any], device: str | torch.device | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(logits [N, C] float32, labels [N] int64 or None)`` of ``model`` on every batch of
    ``loader``, in the loader's order — what ``kdfair.audit`` takes for one seed and role.

    The model runs in eval mode without gradients (its mode is restored afterwards), on
    ``device`` (default: where its parameters are; ``"auto"``: CUDA when available), each
    batch moved there. Batches are ``(x, y, …)`` tuples, dicts of keyword inputs with the labels
    under ``labels``/``label``/``target`` (Hugging Face), or inputs alone (labels None). The
    output may be a tensor, a tuple with the logits first (mdistiller) or carry ``.logits``.
    A shuffling DataLoader is refused: rows must stay aligned with labels and groups.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    _check_order(loader)
    if device is None:
        dev = _model_device(model)
    else:
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                           else "cpu" if device == "auto" else device)
        model = model.to(dev)
    was_training = model.training
    model.eval()
    logits, labels, unlabelled = [], [], 0
    try:
        with torch.inference_mode():
            for batch in loader:
                x, y = _split(batch)
                x = _to(x, dev)
                out = model(**x) if isinstance(x, Mapping) else model(x)
                logits.append(_logits(out).float().cpu())
                if y is None:
                    unlabelled += 1
                else:
                    labels.append(torch.as_tensor(y).reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not logits:
        raise ConfigError("the data loader yielded no batches: nothing to predict")
    if unlabelled and labels:
        raise ConfigError("some batches carry labels and some do not: give every batch as "
                          "(x, y) or none")
    out_logits = torch.cat(logits).numpy()
    out_labels = torch.cat(labels).long().numpy() if labels else None
    if out_labels is not None and len(out_labels) != len(out_logits):
        raise ConfigError(f"the loader gave {len(out_labels)} labels for {len(out_logits)} "
                          "predictions: one label per input")
    return out_logits, out_labels
