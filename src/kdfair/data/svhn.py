"""SVHN (cropped digits), in memory as uint8 [N, 3, 32, 32] for the on-device path.

Read by torchvision's ``SVHN`` (scipy.io on the official ``.mat`` files; label 10 becomes digit
0). Files live in ``<data root>/svhn/`` (or loose in the data root). The official test set is the
test part; validation is a seeded, class-stratified share of the training set. ``extra: true``
adds the 531k "extra" images to the training pool before the split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from kdfair.config import DatasetConfig
from kdfair.data import catalog
from kdfair.data.base import Part, SplitData
from kdfair.errors import DatasetError

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
DATASETS: dict[str, catalog.Requirement] = {
    "svhn": catalog.Requirement(
        "svhn", "files", "svhn", ("train_32x32.mat", "test_32x32.mat"),
        "http://ufldl.stanford.edu/housenumbers/", download=True, root_itself=True,
        how="download train_32x32.mat and test_32x32.mat (extra_32x32.mat for `extra: true`)",
    ),
}

MEAN = (0.4377, 0.4438, 0.4728)
STD = (0.1980, 0.2010, 0.1970)


class SvhnOptions(catalog.LoaderOptions):
    """SVHN options: the validation split, and whether to train on the extra set too."""

    extra: bool = False


def _read(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        ds = datasets.SVHN(str(directory), split=split, download=False)
    except RuntimeError as err:
        raise DatasetError(
            f"data set 'svhn': {directory / f'{split}_32x32.mat'} is corrupt or not the official "
            f"file ({err}); download it again from http://ufldl.stanford.edu/housenumbers/ or set "
            "`download: true` under `dataset:`"
        ) from None
    return np.ascontiguousarray(ds.data), np.asarray(ds.labels, dtype=np.int64)


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Load SVHN into memory."""
    opts = catalog.loader_options(SvhnOptions, cfg)
    splits = ["train", "test"] + (["extra"] if opts.extra else [])

    def fetch(root: Path) -> None:
        target = root / "svhn"
        target.mkdir(parents=True, exist_ok=True)
        for s in splits:
            datasets.SVHN(str(target), split=s, download=True)

    d = catalog.ensure_present(DATASETS["svhn"], cfg, fetch,
                               files=[f"{s}_32x32.mat" for s in splits])
    x_tr, y_tr = _read(d, "train")
    if opts.extra:
        x_ex, y_ex = _read(d, "extra")
        x_tr, y_tr = np.concatenate([x_tr, x_ex]), np.concatenate([y_tr, y_ex])
    x_te, y_te = _read(d, "test")
    tr, va = catalog.carve_val(y_tr, opts.val_fraction, opts.split_seed)
    x_all = torch.from_numpy(x_tr)
    return SplitData(
        name="svhn",
        train=Part(y=torch.from_numpy(y_tr[tr]), x=x_all[torch.from_numpy(tr)]),
        val=Part(y=torch.from_numpy(y_tr[va]), x=x_all[torch.from_numpy(va)]),
        test=Part(y=torch.from_numpy(y_te), x=torch.from_numpy(x_te)),
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        fingerprint=catalog.fingerprint("svhn", opts, x_tr, y_tr, x_te, y_te),
        mean=MEAN,
        std=STD,
        notes=[
            f"svhn: {len(tr)} train / {len(va)} val (carved from train"
            + (" + extra" if opts.extra else "")
            + f", val_fraction={opts.val_fraction}, split_seed={opts.split_seed}) / "
            f"{len(y_te)} test (official test set)"
        ],
    )
