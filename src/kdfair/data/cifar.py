"""CIFAR-10 and CIFAR-100, in memory as uint8 [N, 3, 32, 32] for the on-device path.

Files are read by torchvision's ``CIFAR10`` / ``CIFAR100`` (its documented reader unpickles the
official batch files; kdfair itself never unpickles anything). The official test set is the test
part; validation is a seeded, class-stratified share of the official training set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from kdfair.config import DatasetConfig
from kdfair.data.base import Part, SplitData
from kdfair.data.catalog import (
    LoaderOptions,
    Requirement,
    carve_val,
    ensure_present,
    fingerprint,
    loader_options,
)
from kdfair.errors import ConfigError, DatasetError

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
_TV = "torchvision"
DATASETS: dict[str, Requirement] = {
    "cifar10": Requirement(
        "cifar10", "files", "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", download=True,
        how="extract cifar-10-python.tar.gz in the data root",
    ),
    "cifar100": Requirement(
        "cifar100", "files", "cifar-100-python", ("train", "test", "meta"),
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", download=True,
        how="extract cifar-100-python.tar.gz in the data root",
    ),
}

_TV = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class CifarOptions(LoaderOptions):
    """CIFAR loader options: only the validation split (``val_fraction``, ``split_seed``)."""


def _read(cls: type[datasets.CIFAR10], root: Path, train: bool, name: str):
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError as err:
        raise DatasetError(
            f"data set {name!r} in {root / cls.base_folder} is corrupt or not the official "
            f"files ({err}); delete that directory and extract {cls.filename} from "
            f"{cls.url} again, or set `download: true` under `dataset:`"
        ) from None


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Load CIFAR-10 or CIFAR-100 (by ``cfg.name``) into memory."""
    if cfg.name not in _TV:
        raise ConfigError(f"kdfair.data.cifar loads cifar10 or cifar100, not {cfg.name!r}")
    opts = loader_options(CifarOptions, cfg)
    cls = _TV[cfg.name]

    def fetch(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)

    d = ensure_present(DATASETS[cfg.name], cfg, fetch)
    tv_root = d.parent
    train_ds = _read(cls, tv_root, True, cfg.name)
    test_ds = _read(cls, tv_root, False, cfg.name)

    x_all = torch.from_numpy(np.ascontiguousarray(train_ds.data.transpose(0, 3, 1, 2)))
    y_all = np.asarray(train_ds.targets, dtype=np.int64)
    x_test = torch.from_numpy(np.ascontiguousarray(test_ds.data.transpose(0, 3, 1, 2)))
    y_test = np.asarray(test_ds.targets, dtype=np.int64)
    tr, va = carve_val(y_all, opts.val_fraction, opts.split_seed)

    mean, std = _STATS[cfg.name]
    return SplitData(
        name=cfg.name,
        train=Part(y=torch.from_numpy(y_all[tr]), x=x_all[torch.from_numpy(tr)]),
        val=Part(y=torch.from_numpy(y_all[va]), x=x_all[torch.from_numpy(va)]),
        test=Part(y=torch.from_numpy(y_test), x=x_test),
        num_classes=len(train_ds.classes),
        class_names=list(train_ds.classes),
        fingerprint=fingerprint(cfg.name, opts, x_all.numpy(), y_all, x_test.numpy(), y_test),
        mean=mean,
        std=std,
        notes=[
            f"{cfg.name}: {len(tr)} train / {len(va)} val (carved from the official training "
            f"set, val_fraction={opts.val_fraction}, split_seed={opts.split_seed}) / "
            f"{len(y_test)} test (official test set)"
        ],
    )
