"""Dataset registry: name -> loader, derived from the loader modules themselves.

A module of ``kdfair.data`` that declares ``DATASETS`` (name -> ``catalog.Requirement``) and
``load(cfg, cache_dir) -> SplitData`` is a built-in data set family: adding one file adds a data
set. The modules are imported on the first lookup, not when kdfair is imported. The registry
checks the data set an experiment names (``config.register_name_check``): config imports no
registry.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import kdfair.data
from kdfair.config import DatasetConfig, register_name_check
from kdfair.data.catalog import Requirement, default_data_root
from kdfair.errors import ConfigError

if TYPE_CHECKING:
    from kdfair.data.base import SplitData

Loader = Callable[[DatasetConfig, Path], "SplitData"]
_CUSTOM: dict[str, Loader] = {}


@functools.cache
def _builtin() -> dict[str, ModuleType]:
    """Every built-in data set name -> the module that loads it."""
    out: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(kdfair.data.__path__):
        module = importlib.import_module(f"kdfair.data.{info.name}")
        for name in getattr(module, "DATASETS", {}):
            out[name] = module
    return out


def register_dataset(name: str, loader: Loader) -> None:
    """Make ``loader(cfg, cache_dir) -> SplitData`` available as ``dataset.name: <name>``."""
    _CUSTOM[name] = loader


def dataset_names() -> list[str]:
    return sorted(set(_builtin()) | set(_CUSTOM))


def check_dataset(name: str) -> str:
    """``name`` if it is a data set; else a ConfigError listing those there are."""
    if name not in dataset_names():
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(dataset_names())}")
    return name


register_name_check("dataset", check_dataset)


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a data set every process knows (not one registered at run time)."""
    return name in _builtin() and name not in _CUSTOM


def requirement(name: str) -> Requirement:
    """What data set ``name`` needs on disk."""
    if name in _CUSTOM or name not in _builtin():
        return Requirement(name, "custom", how="registered in Python")
    return _builtin()[name].DATASETS[name]


def builtin_module(name: str) -> ModuleType:
    """The module behind a built-in data set (for its documentation and file checks)."""
    return _builtin()[name]


def load_dataset(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Load (or generate) the data set ``cfg`` names."""
    if cfg.name in _CUSTOM:
        return _CUSTOM[cfg.name](cfg, cache_dir)
    return builtin_module(check_dataset(cfg.name)).load(cfg, cache_dir)


def dataset_catalog(root: Path | None = None) -> list[dict[str, Any]]:
    """One row per registered data set: what it needs on disk and whether it is there.

    Keys: ``name``, ``kind`` (files / generated / bundled / custom), ``directory`` (where it was
    found, else where it is expected; None if nothing is read from disk), ``files`` (expected
    there), ``missing`` (those not found), ``found`` (bool; None for custom loaders, which kdfair
    cannot check), ``download`` (whether ``download: true`` can fetch it), ``url``, ``how``.
    """
    root = Path(root).expanduser() if root is not None else default_data_root()
    rows = []
    for name in dataset_names():
        req = requirement(name)
        row: dict[str, Any] = {
            "name": name, "kind": req.kind, "directory": None, "files": list(req.files),
            "missing": [], "found": None if req.kind == "custom" else True,
            "download": req.download, "url": req.url, "how": req.how,
        }
        if req.kind == "files":
            d = req.find(root)
            row["found"] = d is not None
            row["directory"] = str(d if d is not None else req.candidates(root)[0])
            row["missing"] = [] if d is not None else req.missing_in(req.candidates(root)[0])
        rows.append(row)
    return rows
