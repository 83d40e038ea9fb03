"""Streaming image data: the torch Dataset large sets hand out, and their torchvision v2 transforms.

Large image sets (Tiny ImageNet, ImageNet, CelebA) are read from disk image by image. Each part's
``Part.dataset`` is an ``ImageFileDataset`` yielding ``(float32 image [3, H, W], label)``, ready for
the model: augmented for train, resized/cropped for val and test, scaled to [0, 1] and then
standardised with the set's ``SplitData.mean`` / ``std`` (ImageNet statistics, which pretrained
torchvision weights expect). The engine feeds streamed batches to the model as they come; it
standardises only the uint8 in-memory sets itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from kdfair.data.base import Part, SplitData

Family = Literal["imagenet", "tinyimagenet", "celeba"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# CelebA's aligned faces are 178 x 218; the usual face crop is the centred 178 x 178 square.
CELEBA_CROP = 178


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(family: Family, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Standard training augmentation of each family, ending in a standardised float tensor.

    imagenet: RandomResizedCrop(size) + flip (torchvision's reference recipe).
    tinyimagenet: resize to ``size`` if it is not 64, random crop with size/8 padding + flip (the
    CIFAR-style recipe at 64 px). celeba: centre face crop, resize, mild RandomResizedCrop
    (scale 0.75-1) + flip.
    """
    if family == "imagenet":
        ops: list = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    elif family == "tinyimagenet":
        ops = [] if size == 64 else [v2.Resize(size, antialias=True)]
        ops += [v2.RandomCrop(size, padding=max(size // 8, 1)), v2.RandomHorizontalFlip()]
    elif family == "celeba":
        ops = [
            v2.CenterCrop(CELEBA_CROP),
            v2.RandomResizedCrop(size, scale=(0.75, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    else:
        raise ValueError(f"unknown transform family {family!r}")
    return v2.Compose([*ops, *_to_float(mean, std)])


def eval_transform(family: Family, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Deterministic evaluation transform of each family (standardised float tensor).

    imagenet: resize the short side to size·256/224, centre crop ``size``. tinyimagenet: resize
    to ``size`` (a no-op at 64). celeba: centre face crop, resize to ``size``.
    """
    if family == "imagenet":
        ops: list = [v2.Resize(int(round(size * 256 / 224)), antialias=True), v2.CenterCrop(size)]
    elif family == "tinyimagenet":
        ops = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    elif family == "celeba":
        ops = [v2.CenterCrop(CELEBA_CROP), v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    else:
        raise ValueError(f"unknown transform family {family!r}")
    return v2.Compose([*ops, *_to_float(mean, std)])


class ImageFileDataset(Dataset):
    """Images read from files, converted to RGB (Tiny ImageNet and ImageNet have greyscale and
    CMYK JPEGs), transformed; item i is ``(transform(image_i), labels[i])``.

    Holds only paths (as str) and an int64 label array, so it pickles cheaply into DataLoader
    worker processes.
    """

    def __init__(self, paths: Sequence[str], labels: np.ndarray, transform: v2.Transform) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            img = im.convert("RGB")
        return self.transform(img), int(self.labels[i])


def image_file_split(name: str, family: Family, root: Path, opts: Any, wnids: list[str],
                     class_names: list[str], train: tuple[list[str], np.ndarray],
                     test: tuple[list[str], np.ndarray], test_note: str) -> SplitData:
    """SplitData of an image-file set: val carved from train (seeded, stratified), test as
    given, every part streamed through ``ImageFileDataset`` with the family's transforms."""
    from kdfair.data.catalog import carve_val, fingerprint

    (tr_paths, tr_y), (te_paths, te_y) = train, test
    tr, va = carve_val(tr_y, opts.val_fraction, opts.split_seed)
    size = opts.image_size
    t_train, t_eval = train_transform(family, size), eval_transform(family, size)

    def part(paths: list[str], y: np.ndarray, transform) -> Part:
        return Part(y=torch.from_numpy(y), dataset=ImageFileDataset(paths, y, transform))

    rel = [str(Path(p).relative_to(root)) for p in tr_paths + te_paths]
    return SplitData(
        name=name,
        train=part([tr_paths[i] for i in tr], tr_y[tr], t_train),
        val=part([tr_paths[i] for i in va], tr_y[va], t_eval),
        test=part(te_paths, te_y, t_eval),
        num_classes=len(wnids),
        class_names=class_names,
        fingerprint=fingerprint(name, opts, wnids, rel, tr_y, te_y),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        notes=[f"{name}: {len(tr)} train / {len(va)} val (carved from train, val_fraction="
               f"{opts.val_fraction}, split_seed={opts.split_seed}) / {len(te_y)} test "
               f"({test_note}); {len(wnids)} classes; images {size} x {size}"],
    )
