"""SplitData: the one shape every dataset loader returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Part:
    """One split (train, val or test).

    Small image sets keep ``x`` as a uint8 tensor [N, C, H, W] (the fast on-device path); large
    ones set ``dataset`` instead: a torch Dataset yielding ``(float image tensor, label)`` already
    transformed. ``y`` (int64 [N]) and ``attributes`` (name -> int64 group codes [N]) are always
    in memory.
    """

    y: torch.Tensor
    x: torch.Tensor | None = None
    dataset: torch.utils.data.Dataset | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def in_memory(self) -> bool:
        return self.x is not None


@dataclass
class SplitData:
    """Train / val / test parts plus what the study needs to know about them.

    ``attribute_groups`` maps each sensitive attribute to its group names (code i -> name i).
    ``fingerprint`` identifies the exact data (loader parameters and content); it goes into every
    RunSpec so that stored runs are never mixed across different data. ``mean`` / ``std`` are the
    per-channel normalisation applied after scaling uint8 images to [0, 1].
    """

    name: str
    train: Part
    val: Part
    test: Part
    num_classes: int
    class_names: list[str]
    fingerprint: str
    attribute_groups: dict[str, list[str]] = field(default_factory=dict)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    notes: list[str] = field(default_factory=list)
    test_features: np.ndarray | None = None  # individual fairness's space, when not the pixels
    # attribute -> the test inputs with that attribute changed (row i: test input i's
    # counterfactual; ``Part.attributes[attr]``: the group it was changed to). Not part of the
    # fingerprint: they are a function of the data, and only add predictions to a run.
    counterfactuals: dict[str, Part] = field(default_factory=dict)
    counterfactual_notes: dict[str, str] = field(default_factory=dict)  # attr -> how, in words

    @property
    def in_memory(self) -> bool:
        return self.train.in_memory and self.val.in_memory and self.test.in_memory

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one input."""
        if self.train.x is not None:
            return tuple(self.train.x.shape[1:])  # type: ignore[return-value]
        x0, _ = self.train.dataset[0]  # type: ignore[index]
        return tuple(x0.shape) if isinstance(x0, torch.Tensor) else ()  # type: ignore[return-value]


def distinct_names(names: list[str], ids: list[str]) -> list[str]:
    """Class names made unique: a name several classes share gets its id appended (ImageNet has
    two 'crane's: 'crane (n02012849)', 'crane (n03126707)'), so tables keyed by name keep every
    class apart."""
    counts = Counter(names)
    return [f"{n} ({i})" if counts[n] > 1 else n for n, i in zip(names, ids, strict=True)]
