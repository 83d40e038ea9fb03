"""Tiny ImageNet-200, streamed from its own on-disk layout.

Layout (``<data root>/tiny-imagenet-200/``): ``wnids.txt`` (the 200 classes; class i is line i),
``words.txt`` (``wnid<TAB>names``), ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with
labels in ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box``). Images are 64 x 64, some
greyscale (converted to RGB). The official test labels are not public, so the official val split
is kdfair's test part; validation is a seeded, class-stratified share of train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from kdfair.config import DatasetConfig
from kdfair.data.base import SplitData, distinct_names
from kdfair.data.catalog import (
    LoaderOptions,
    Requirement,
    ensure_present,
    loader_options,
)
from kdfair.data.transforms import image_file_split
from kdfair.errors import DatasetError

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
DATASETS: dict[str, Requirement] = {
    "tinyimagenet": Requirement(
        "tinyimagenet", "files", "tiny-imagenet-200",
        ("wnids.txt", "words.txt", "train/", "val/images/", "val/val_annotations.txt"),
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip", download=True, root_itself=True,
        how="extract tiny-imagenet-200.zip in the data root",
    ),
}

MD5 = "90528d7ca1a48142e341f4ef8d21d0de"  # tiny-imagenet-200.zip
_IMG_EXT = (".jpeg", ".jpg", ".png")


class TinyImageNetOptions(LoaderOptions):
    """Tiny ImageNet options: the validation split and the side length images are resized to."""

    image_size: int = Field(64, ge=8, description="side of the (square) input; 64 = native")


def _lines(p: Path) -> list[str]:
    return [ln.rstrip("\n\r") for ln in p.read_text().splitlines() if ln.strip()]


Index = tuple[list[str], list[str], list[str], np.ndarray, list[str], np.ndarray]


def read_index(d: Path) -> Index:
    """(wnids, class names, train paths, train labels, test paths, test labels) of a layout."""
    wnids = [w.strip() for w in _lines(d / "wnids.txt")]
    if len(set(wnids)) != len(wnids):
        raise DatasetError(f"{d / 'wnids.txt'}: repeated class ids")
    index = {w: i for i, w in enumerate(wnids)}
    words = {}
    for ln in _lines(d / "words.txt"):
        wnid, _, names = ln.partition("\t")
        words[wnid.strip()] = names.split(",")[0].strip()
    names = distinct_names([words.get(w, w) for w in wnids], wnids)

    tr_paths: list[str] = []
    tr_labels: list[int] = []
    for w in wnids:
        img_dir = d / "train" / w / "images"
        files = sorted(p for p in img_dir.glob("*") if p.suffix.lower() in _IMG_EXT)
        if not files:
            raise DatasetError(
                f"data set 'tinyimagenet': no images in {img_dir} (class {w} of wnids.txt); "
                "the archive seems incompletely extracted: extract tiny-imagenet-200.zip again"
            )
        tr_paths += [str(p) for p in files]
        tr_labels += [index[w]] * len(files)

    te_paths: list[str] = []
    te_labels: list[int] = []
    ann = d / "val" / "val_annotations.txt"
    missing = []
    for n, ln in enumerate(_lines(ann), 1):
        fields = ln.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            raise DatasetError(f"{ann}, line {n}: expected 'file<TAB>wnid<TAB>...' with a wnid "
                               f"from wnids.txt; got {ln!r}")
        p = d / "val" / "images" / fields[0].strip()
        if not p.is_file():
            missing.append(p.name)
        te_paths.append(str(p))
        te_labels.append(index[fields[1].strip()])
    if missing:
        raise DatasetError(
            f"data set 'tinyimagenet': {len(missing)} images named in {ann} are missing from "
            f"{d / 'val' / 'images'} (e.g. {', '.join(missing[:3])}); extract the archive again"
        )
    return (wnids, names, tr_paths, np.asarray(tr_labels, dtype=np.int64), te_paths,
            np.asarray(te_labels, dtype=np.int64))


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Index Tiny ImageNet and wrap its parts as streaming datasets."""
    opts = loader_options(TinyImageNetOptions, cfg)
    req = DATASETS["tinyimagenet"]

    def fetch(root: Path) -> None:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(req.url, str(root), md5=MD5)

    d = ensure_present(DATASETS["tinyimagenet"], cfg, fetch)
    wnids, names, tr_paths, tr_y, te_paths, te_y = read_index(d)
    return image_file_split("tinyimagenet", "tinyimagenet", d, opts, wnids, names,
                            (tr_paths, tr_y), (te_paths, te_y),
                            "the official val split; test labels are not public")
