"""CelebA: a binary face attribute as the label, other attributes as sensitive groups; streamed.

Read by torchvision's ``CelebA`` (``<data root>/celeba/``: ``img_align_celeba/`` and the five
annotation files). The label is ``Smiling`` by default (``label: Eyeglasses`` or any of the 40
attributes); the sensitive attributes are ``Young`` and ``Male`` by default (``sensitive: [...]``).
The official partition gives train / val / test. The training part is balanced on the label by
seeded undersampling of the majority class (``balance: false`` turns it off); the group shares
that result are reported in ``SplitData.notes`` (the paper finds 'not young' at about 22 %).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torchvision import datasets

from kdfair.config import DatasetConfig
from kdfair.data.base import Part, SplitData
from kdfair.data.catalog import Requirement, digest, ensure_present, fingerprint, loader_options
from kdfair.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFileDataset,
    eval_transform,
    train_transform,
)
from kdfair.errors import ConfigError, DatasetError

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
DATASETS: dict[str, Requirement] = {
    "celeba": Requirement(
        "celeba", "files", "celeba",
        ("img_align_celeba/", "list_eval_partition.txt", "list_attr_celeba.txt",
         "identity_CelebA.txt", "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt"),
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html", download=True,
        how="unzip img_align_celeba.zip there and add the five annotation files (Google Drive "
        "links on that page; torchvision's download needs `pip install gdown` and often hits "
        "Google Drive's quota)",
    ),
}

# readable group names (code 0, code 1); other attributes get ("not <A>", "<A>")
GROUP_NAMES = {"Male": ["female", "male"], "Young": ["not young", "young"]}


class CelebAOptions(BaseModel):
    """CelebA options (validation is the official valid split, so there is no val_fraction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = "Smiling"
    sensitive: tuple[str, ...] = ("Young", "Male")
    balance: bool = Field(True, description="undersample the training majority class")
    balance_seed: int = Field(0, ge=0)
    image_size: int = Field(224, ge=8, description="side of the square input after the face crop")

    @field_validator("sensitive", mode="before")
    @classmethod
    def _listify(cls, v: object) -> object:
        return (v,) if isinstance(v, str) else v


def group_names(attr: str) -> list[str]:
    return GROUP_NAMES.get(attr, [f"not {attr}", attr])


def balance_indices(y: np.ndarray, seed: int) -> np.ndarray:
    """Sorted indices keeping every item of the rarest class and as many, drawn without
    replacement with ``seed``, of each other class."""
    rng = np.random.default_rng([seed, 0xBA1])
    classes, counts = np.unique(y, return_counts=True)
    n = int(counts.min())
    keep = [rng.choice(np.flatnonzero(y == c), size=n, replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


def _shares(attrs: dict[str, np.ndarray]) -> str:
    out = []
    for a, v in attrs.items():
        names = group_names(a)
        out.append(f"{a}: " + ", ".join(
            f"{names[g]} {100 * float(np.mean(v == g)):.1f} %" for g in range(2)))
    return "; ".join(out)


def _partition(path: Path) -> tuple[list[str], np.ndarray]:
    names, split = [], []
    for n, ln in enumerate(path.read_text().splitlines(), 1):
        if not ln.strip():
            continue
        f = ln.split()
        if len(f) != 2 or f[1] not in ("0", "1", "2"):
            raise DatasetError(f"{path}, line {n}: expected '<image> <0|1|2>'; got {ln!r}")
        names.append(f[0])
        split.append(int(f[1]))
    return names, np.asarray(split, dtype=np.int64)


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Load CelebA's annotations into memory and wrap its images as streaming datasets."""
    opts = loader_options(CelebAOptions, cfg)

    def fetch(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        datasets.CelebA(str(root), split="all", target_type=[], download=True)

    d = ensure_present(DATASETS["celeba"], cfg, fetch)
    try:
        tv = datasets.CelebA(str(d.parent), split="all", target_type=[], download=False)
    except RuntimeError as err:
        raise DatasetError(
            f"data set 'celeba' in {d}: an annotation file is corrupt or not the official one "
            f"({err}); get them again from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
        ) from None
    except (ValueError, IndexError) as err:
        raise DatasetError(
            f"data set 'celeba' in {d}: cannot parse the annotations: {err}"
        ) from None
    attr_names = [a for a in tv.attr_names if a]
    for field, names in (("label", [opts.label]), ("sensitive", list(opts.sensitive))):
        bad = [a for a in names if a not in attr_names]
        if bad:
            raise ConfigError(f"dataset.{field}: unknown CelebA attribute(s) {bad}; "
                              f"allowed: {', '.join(attr_names)}")
    if opts.label in opts.sensitive:
        raise ConfigError(f"dataset.sensitive: {opts.label!r} is the label; pick other attributes")
    files, split = _partition(d / "list_eval_partition.txt")
    if list(tv.filename) != files:
        raise DatasetError(f"data set 'celeba' in {d}: list_eval_partition.txt and the "
                           "attribute file list different images; get the official files")
    attr = tv.attr.numpy().astype(np.int64)  # {0, 1}
    col = {a: attr_names.index(a) for a in (opts.label, *opts.sensitive)}
    y_all = attr[:, col[opts.label]]

    idx = {s: np.flatnonzero(split == k) for k, s in enumerate(("train", "val", "test"))}
    n_train_raw = len(idx["train"])
    if opts.balance:
        idx["train"] = idx["train"][balance_indices(y_all[idx["train"]], opts.balance_seed)]
    size = opts.image_size
    transforms = {"train": train_transform("celeba", size), "val": eval_transform("celeba", size),
                  "test": eval_transform("celeba", size)}
    img_dir = d / "img_align_celeba"
    parts = {}
    for s, ix in idx.items():
        y = y_all[ix]
        paths = [str(img_dir / files[i]) for i in ix]
        parts[s] = Part(
            y=torch.from_numpy(y),
            dataset=ImageFileDataset(paths, y, transforms[s]),
            attributes={a: attr[ix, col[a]].copy() for a in opts.sensitive},
        )
    tr = parts["train"]
    label_share = 100 * float(np.mean(tr.y.numpy() == 1)) if len(tr) else 0.0
    note = (
        f"celeba: label {opts.label}; train {len(tr)} images"
        + (f" after balancing {n_train_raw} on the label by undersampling "
           f"(balance_seed={opts.balance_seed})" if opts.balance else " (not balanced)")
        + f", {opts.label} {label_share:.1f} %; group shares in train: "
        + _shares(tr.attributes)
        + f"; val {len(parts['val'])} / test {len(parts['test'])} (official partition)"
    )
    return SplitData(
        name="celeba",
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        num_classes=2,
        class_names=[f"not {opts.label}", opts.label],
        fingerprint=fingerprint(
            "celeba", opts, digest(files, split), attr_names, attr,
            {s: digest(ix) for s, ix in idx.items()},
        ),
        attribute_groups={a: group_names(a) for a in opts.sensitive},
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        notes=[note],
    )
