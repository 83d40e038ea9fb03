"""ImageNet-1k (ILSVRC 2012), streamed from torchvision's ImageNet / ImageFolder layout.

``<data root>/imagenet/`` (or the data root itself) holds ``train/<wnid>/*.JPEG`` and
``val/<wnid>/*.JPEG``. If only the official archives are there (``ILSVRC2012_img_train.tar``,
``ILSVRC2012_img_val.tar``, ``ILSVRC2012_devkit_t12.tar.gz``), torchvision's ``ImageNet`` unpacks
them into that layout on first use. Classes are the sorted wnids of ``train/`` (torchvision's
order, the one its pretrained weights use); class names come from torchvision's ``meta.bin``
(read with ``weights_only``) or ``LOC_synset_mapping.txt`` when present, else the wnids.
The official val split is the test part; validation is a seeded, class-stratified share of train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from kdfair.config import DatasetConfig
from kdfair.data.base import SplitData, distinct_names
from kdfair.data.catalog import (
    LoaderOptions,
    Requirement,
    data_root,
    ensure_present,
    loader_options,
)
from kdfair.data.transforms import image_file_split
from kdfair.errors import DatasetError

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
DATASETS: dict[str, Requirement] = {
    "imagenet": Requirement(
        "imagenet", "files", "imagenet", ("train/", "val/"),
        "https://image-net.org/challenges/LSVRC/2012/2012-downloads.php", root_itself=True,
        how="ImageFolder layout train/<wnid>/*.JPEG and val/<wnid>/*.JPEG; or put "
        "ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz "
        "there and torchvision unpacks them on first use (registration required, no download)",
    ),
}

ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")


class ImageNetOptions(LoaderOptions):
    """ImageNet options: the validation split and the input side (224 = the standard crop)."""

    image_size: int = Field(224, ge=8)


def _unpack_archives(cfg: DatasetConfig) -> None:
    """Let torchvision unpack the official archives if they are present and the folders not."""
    req = DATASETS["imagenet"]
    root = data_root(cfg)
    if req.find(root) is not None:
        return
    for d in req.candidates(root):
        if all((d / a).is_file() for a in ARCHIVES):
            from torchvision.datasets import ImageNet

            try:
                for split in ("train", "val"):
                    ImageNet(str(d), split=split)
            except RuntimeError as err:
                raise DatasetError(f"data set 'imagenet': unpacking the archives in {d} failed: "
                                   f"{err}") from None
            return


def _class_names(d: Path, wnids: list[str]) -> list[str]:
    meta = d / "meta.bin"
    if meta.is_file():
        try:
            wnid_to_classes = torch.load(meta, weights_only=True)[0]
            return [wnid_to_classes[w][0] if w in wnid_to_classes else w for w in wnids]
        except Exception:  # an unreadable meta.bin only costs the readable names
            pass
    mapping = d / "LOC_synset_mapping.txt"
    if mapping.is_file():
        names = {}
        for ln in mapping.read_text().splitlines():
            wnid, _, rest = ln.partition(" ")
            names[wnid] = rest.split(",")[0].strip()
        return [names.get(w, w) for w in wnids]
    return list(wnids)


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Index ImageNet's folders and wrap the parts as streaming datasets."""
    opts = loader_options(ImageNetOptions, cfg)
    _unpack_archives(cfg)
    d = ensure_present(DATASETS["imagenet"], cfg)
    wnids, class_to_idx = find_classes(str(d / "train"))
    val_dirs = sorted(p.name for p in (d / "val").iterdir() if p.is_dir())
    if not val_dirs:
        raise DatasetError(
            f"data set 'imagenet': {d / 'val'} has no class folders; the val images must be "
            "sorted into val/<wnid>/ (torchvision's ImageNet does this from "
            "ILSVRC2012_devkit_t12.tar.gz, or use the common valprep.sh script)"
        )
    extra = sorted(set(val_dirs) - set(class_to_idx))
    if extra:
        raise DatasetError(f"data set 'imagenet': val has classes that train lacks: {extra[:5]}")
    try:
        train_items = make_dataset(str(d / "train"), class_to_idx, IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DatasetError(f"data set 'imagenet' in {d / 'train'}: {err}") from None
    test_items = make_dataset(str(d / "val"), class_to_idx, IMG_EXTENSIONS,
                              allow_empty=True)
    train = ([p for p, _ in train_items], np.asarray([c for _, c in train_items], np.int64))
    test = ([p for p, _ in test_items], np.asarray([c for _, c in test_items], np.int64))
    names = distinct_names(_class_names(d, wnids), wnids)
    return image_file_split("imagenet", "imagenet", d, opts, wnids, names,
                            train, test, "the official val split")
