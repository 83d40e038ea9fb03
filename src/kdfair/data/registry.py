"""Dataset registry: name -> loader. Built-in loaders are imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kdfair.errors import ConfigError

if TYPE_CHECKING:
    from kdfair.config import DatasetConfig
    from kdfair.data.base import SplitData

Loader = Callable[["DatasetConfig", Path], "SplitData"]

# name -> module defining `load(cfg, cache_dir) -> SplitData`
_BUILTIN: dict[str, str] = {
    "trifeature": "kdfair.data.trifeature",
    "digits": "kdfair.data.digits",
    "cifar10": "kdfair.data.cifar",
    "cifar100": "kdfair.data.cifar",
    "svhn": "kdfair.data.svhn",
    "tinyimagenet": "kdfair.data.tinyimagenet",
    "imagenet": "kdfair.data.imagenet",
    "celeba": "kdfair.data.celeba",
    "hatexplain": "kdfair.data.hatexplain",
}
_CUSTOM: dict[str, Loader] = {}


def register_dataset(name: str, loader: Loader) -> None:
    """Make ``loader(cfg, cache_dir) -> SplitData`` available as ``dataset.name: <name>``."""
    _CUSTOM[name] = loader


def dataset_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_CUSTOM))


def builtin_module(name: str):
    """The module behind a built-in data set (for its documentation and file checks)."""
    return importlib.import_module(_BUILTIN[name])


def load_dataset(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Load (or generate) the data set ``cfg`` names."""
    if cfg.name in _CUSTOM:
        return _CUSTOM[cfg.name](cfg, cache_dir)
    if cfg.name not in _BUILTIN:
        raise ConfigError(f"unknown dataset {cfg.name!r}; allowed: {', '.join(dataset_names())}")
    return builtin_module(cfg.name).load(cfg, cache_dir)
