"""Recipes: models trained with torchdistill, mdistiller or a Hugging Face ``Trainer``, audited by
kdfair — one ``kdfair.predict`` per model, one ``kdfair.audit`` per study. docs/recipes.md shows
these functions; tests/test_recipes.py runs each with tiny models (and checks the page shows
them as they are here)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import kdfair


def audit_models(load: Callable[[Any], torch.nn.Module], checkpoints: Mapping[str, Any],
                 test_loader: Any, groups: Mapping[str, Sequence[int]],
                 group_names: Mapping[str, Sequence[str]], out: str | Path = "results",
                 name: str = "audit") -> Path:
    """Audit models trained elsewhere. ``checkpoints``: ``{"teacher": [one per seed], "nds":
    [...], "ds": {T: [...]}}``; ``load(checkpoint)`` rebuilds one model; the test loader must
    not shuffle (row i of every prediction is test input i, as in ``groups``)."""
    labels: list[np.ndarray] = []

    def logits(checkpoint: Any) -> np.ndarray:
        z, y = kdfair.predict(load(checkpoint), test_loader)
        labels.append(y)
        return z

    teacher = [logits(c) for c in checkpoints["teacher"]]
    nds = [logits(c) for c in checkpoints["nds"]]
    ds = {t: [logits(c) for c in cs] for t, cs in checkpoints["ds"].items()}
    return kdfair.audit(labels[0], teacher=teacher, nds=nds, ds=ds, groups=groups,
                        group_names=group_names, out=out, name=name)


def load_torchdistill(path: str | Path, arch: str = "resnet20",
                      num_classes: int = 10) -> torch.nn.Module:
    """A model trained by torchdistill, from its checkpoint (``save_ckpt``: ``{"model":
    state_dict, "args": Namespace, ...}``) and torchdistill's model registry. Read with
    ``weights_only=True``, allowing only the ``argparse.Namespace`` of its arguments besides
    tensors (torchdistill's own ``load_ckpt`` would unpickle anything)."""
    from torchdistill.models.registry import get_model

    model = get_model(arch, num_classes=num_classes)
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    return model


def load_mdistiller(path: str | Path, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A model trained by mdistiller: ``build()`` makes its architecture (e.g.
    ``cifar_model_dict["resnet20"][0](num_classes=100)``), the checkpoint (``student_best``)
    holds ``{"model": state_dict, ...}``. Its forward returns ``(logits, features)``:
    ``kdfair.predict`` takes the logits."""
    model = build()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model


def hf_predictions(trainer: Any, test_dataset: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and labels of a Hugging Face ``Trainer``'s model on a test set, in order (the
    Trainer's own test loader: its collator, batch size and device)."""
    return kdfair.predict(trainer.model, trainer.get_test_dataloader(test_dataset))
