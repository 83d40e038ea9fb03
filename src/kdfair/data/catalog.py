"""What every data set needs on disk, where kdfair looks for it, and helpers the file loaders share.

A ``Requirement`` says, for one data set, which directory under the data root holds it, the
exact files expected there and where to get them; each loader module declares its own
(``DATASETS``). The loaders use them to find their files and to word the ``DatasetError`` a
missing data set raises; ``registry.dataset_catalog`` lists them for ``kdfair datasets``. The
data root is ``dataset.root`` if given, else ``$KDFAIR_DATA``, else ``./data``.

The second half holds what the file-based loaders (CIFAR, SVHN, Tiny ImageNet, ImageNet, CelebA)
have in common: option validation that names the bad field, a seeded stratified validation split
carved from train, and the data fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kdfair.errors import SETTING, DatasetError
from kdfair.integrity import digest
from kdfair.options import validate_options

if TYPE_CHECKING:
    from kdfair.config import DatasetConfig

DATA_ENV = "KDFAIR_DATA"

Kind = Literal["files", "generated", "bundled", "custom"]


@dataclass(frozen=True)
class Requirement:
    """What one data set needs on disk.

    ``subdir`` is the directory under the data root that holds ``files`` (a trailing ``/`` marks
    a directory). With ``root_itself`` the data root may also be that directory (for sets whose
    files sit loose in their folder, e.g. SVHN's ``.mat`` files). ``download`` says whether
    ``download: true`` can fetch the set (through torchvision).
    """

    name: str
    kind: Kind
    subdir: str | None = None
    files: tuple[str, ...] = ()
    url: str = ""
    download: bool = False
    root_itself: bool = False
    how: str = ""

    def candidates(self, root: Path) -> list[Path]:
        """Directories searched for the files, preferred first."""
        if self.subdir is None:
            return []
        out = [root / self.subdir]
        if self.root_itself or root.name == self.subdir:
            out.append(root)
        return list(dict.fromkeys(out))

    def missing_in(self, directory: Path, files: Iterable[str] | None = None) -> list[str]:
        """The expected files (or ``files``) that ``directory`` lacks."""
        need = self.files if files is None else tuple(files)
        return [f for f in need if not _exists(directory / f, f.endswith("/"))]

    def find(self, root: Path, files: Iterable[str] | None = None) -> Path | None:
        """The first candidate directory holding all expected files, else None."""
        need = tuple(self.files if files is None else files)
        for d in self.candidates(root):
            if d.is_dir() and not self.missing_in(d, need):
                return d
        return None


def _exists(p: Path, is_dir: bool) -> bool:
    return p.is_dir() if is_dir else p.is_file()


def default_data_root() -> Path:
    """``$KDFAIR_DATA``, else ``./data``."""
    return Path(os.environ.get(DATA_ENV) or "data").expanduser()


def data_root(cfg: DatasetConfig) -> Path:
    """The data root of ``cfg``: its ``root``, else the default."""
    return Path(cfg.root).expanduser() if cfg.root is not None else default_data_root()


def missing_error(
    req: Requirement, root: Path, files: Iterable[str] | None = None, cause: str = ""
) -> DatasetError:
    """The error for a data set that is not (completely) on disk: what, where, and how to fix."""
    name = req.name
    need = list(req.files if files is None else files)
    cands = req.candidates(root)
    d = cands[0]
    lines = [f"data set {name!r} not found" + (f" ({cause})" if cause else "") + "."]
    lines.append("searched " + " and ".join(str(c) for c in cands) + " for:")
    lines += [f"  {f}" + ("  <- missing" if f in req.missing_in(d, need) else "") for f in need]
    lines.append(f"get it from {req.url}: {req.how}, so that the files above are in {d}.")
    if req.download:
        lines.append("or set `download: true` under `dataset:` to let torchvision fetch it.")
    lines.append(f"the data root is {SETTING} if given, else `dataset.root`, else ${DATA_ENV}, "
                 "else ./data.")
    return DatasetError("\n".join(lines), setting="data_root")


def ensure_present(
    req: Requirement,
    cfg: DatasetConfig,
    fetch: Callable[[Path], None] | None = None,
    files: Iterable[str] | None = None,
) -> Path:
    """The directory holding the data set ``req`` describes; fetched first with ``download:
    true``.

    ``fetch(root)`` downloads into the data root (torchvision's download). Without ``download``,
    or when the download fails, raise ``DatasetError`` with the message of ``missing_error``.
    """
    root = data_root(cfg)
    need = tuple(req.files if files is None else files)
    found = req.find(root, need)
    if found is not None:
        return found
    if not (cfg.download and fetch is not None):
        raise missing_error(req, root, need)
    try:
        fetch(root)
    except Exception as err:  # network, checksum, missing gdown: all end in the same advice
        raise missing_error(req, root, need, f"download failed: {err}") from None
    found = req.find(root, need)
    if found is None:
        raise missing_error(req, root, need, "download finished but files are missing")
    return found


# --- helpers shared by the file-based loaders ---------------------------------------------------


class LoaderOptions(BaseModel):
    """Options every file-based loader with a carved validation split accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out as val")
    split_seed: int = Field(0, ge=0, description="seed of the train/val split")


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def loader_options(model: type[OptionsT], cfg: DatasetConfig) -> OptionsT:
    """Validate ``cfg.options`` with ``model``; ConfigError naming each bad ``dataset.<field>``."""
    return validate_options(model, cfg.options, "dataset", f"dataset {cfg.name!r}")


def carve_val(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of ``labels`` into (train, val), stratified by class, seeded.

    Val gets ``round(fraction · N)`` items (at least one), shared out over the classes in
    proportion to their sizes (largest remainders, ties broken by the seed), so class shares
    match. Both index arrays are sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0x5EED])
    classes, counts = np.unique(labels, return_counts=True)
    total = min(max(int(round(fraction * len(labels))), 1), max(len(labels) - 1, 0))
    quota = fraction * counts
    take = np.floor(quota).astype(np.int64)
    short = total - int(take.sum())
    if short > 0:
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:short]] += 1
    val = [rng.permutation(np.flatnonzero(labels == c))[:k]
           for c, k in zip(classes, take, strict=True)]
    mask = np.zeros(len(labels), dtype=bool)
    if val:
        mask[np.concatenate(val)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def fingerprint(name: str, options: BaseModel, *content: Any, version: int = 1) -> str:
    """Short id of the exact data: loader, its version and options, and a content digest
    (:func:`kdfair.integrity.digest`, also exported here for the loaders)."""
    return f"{name}-{digest(version, options.model_dump(mode='json'), *content)[:16]}"
