"""scikit-learn's bundled handwritten digits (UCI optdigits test set): a tiny, offline data set.

1797 greyscale 8 × 8 images, values 0–16, 10 classes, shipped with scikit-learn (no download).
Pixels are scaled to uint8 0–255 (round(v · 255 / 16)) and returned as [N, 1, size, size]; a
``size`` above 8 upsamples with ``interpolation`` (nearest: pixel replication; bilinear: PIL
bilinear on the uint8 image). The split is seeded and stratified by class: ``test_fraction`` of
all images is held out, then ``val_fraction`` of the rest is carved out for validation. There are
no sensitive attributes; the set exists for fast smoke tests and demos of the pipeline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from kdfair.config import DatasetConfig
from kdfair.data.base import Part, SplitData
from kdfair.data.catalog import Requirement
from kdfair.options import validate_options

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
DATASETS: dict[str, Requirement] = {
    "digits": Requirement("digits", "bundled", how="ships with scikit-learn"),
}

CLASS_NAMES: list[str] = [str(d) for d in range(10)]

class DigitsOptions(BaseModel):
    """Loader options (``dataset:`` keys besides ``name``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(8, ge=8, le=64)
    interpolation: Literal["nearest", "bilinear"] = "nearest"
    test_fraction: float = Field(0.3, ge=0.05, le=0.5)
    val_fraction: float = Field(0.1, ge=0.02, le=0.5)
    seed: int = Field(0, ge=0, le=2**32 - 1)


def digits_options(options: Mapping[str, Any] | DigitsOptions | None) -> DigitsOptions:
    """Validate loader options, raising ConfigError that names the field and what is allowed."""
    return validate_options(DigitsOptions, options, "dataset", "dataset 'digits'")


def digits_arrays(size: int = 8, interpolation: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images as uint8 [N, 1, size, size] (0–255) and labels int64 [N]."""
    from sklearn.datasets import load_digits  # imported here: 1.6 s that registering needs not

    bunch = load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    y = bunch.target.astype(np.int64)
    if size != 8:
        if interpolation == "nearest" and size % 8 == 0:
            f = size // 8
            x = x.repeat(f, axis=1).repeat(f, axis=2)
        else:
            resample = Image.NEAREST if interpolation == "nearest" else Image.BILINEAR
            x = np.stack(
                [np.asarray(Image.fromarray(im).resize((size, size), resample)) for im in x]
            )
    return np.ascontiguousarray(x[:, None]), y


def split_indices(
    y: np.ndarray, test_fraction: float, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded, class-stratified (train, val, test) index arrays, each sorted."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(
        idx, test_size=test_fraction, stratify=y, random_state=seed % 2**32
    )
    train, val = train_test_split(
        rest, test_size=val_fraction, stratify=y[rest], random_state=(seed + 1) % 2**32
    )
    return np.sort(train), np.sort(val), np.sort(test)


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """The digits set split as ``cfg.options`` say (nothing is cached: it loads in milliseconds)."""
    opts = digits_options(cfg.options)
    x, y = digits_arrays(opts.size, opts.interpolation)
    parts_idx = split_indices(y, opts.test_fraction, opts.val_fraction, opts.seed)
    train, val, test = (
        Part(y=torch.from_numpy(y[i].copy()), x=torch.from_numpy(x[i].copy())) for i in parts_idx
    )
    xt = x[parts_idx[0]].astype(np.float64) / 255.0
    # not kdfair.integrity.digest: this hash is part of the id of every stored digits run, and
    # hashing other bytes would orphan every store made so far
    h = hashlib.sha256()
    for i in parts_idx:
        h.update(x[i].tobytes())
        h.update(y[i].tobytes())
    opt_hash = hashlib.sha256(json.dumps(opts.model_dump(), sort_keys=True).encode())
    return SplitData(
        name="digits",
        train=train,
        val=val,
        test=test,
        num_classes=10,
        class_names=list(CLASS_NAMES),
        fingerprint=f"digits-{opt_hash.hexdigest()[:12]}-{h.hexdigest()[:12]}",
        attribute_groups={},
        mean=(float(xt.mean()),),
        std=(float(xt.std()),),
        notes=["scikit-learn load_digits: 8x8 greyscale, no sensitive attributes"],
    )
