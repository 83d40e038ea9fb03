"""Model registry: architecture name -> factory, derived from the model modules themselves.

A factory is called as ``factory(num_classes=..., input_shape=(C, H, W), **options)`` and returns
an ``nn.Module``. ``members=G`` is passed only when G > 1 (banked training on CUDA): small models
support it, one module holding G independent members (see ``kdfair.models.bank``); a factory
without a ``members`` parameter trains one member at a time.

Every module of ``kdfair.models`` registers its family with ``factories.register_model`` when
imported, so adding one file adds a model family. The modules are imported on the first lookup.
The registry checks the architectures an experiment names (``config.register_name_check``).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil

import torch.nn as nn

import kdfair.models
from kdfair.config import register_name_check
from kdfair.errors import ConfigError
from kdfair.models.factories import FACTORIES as _FACTORIES
from kdfair.models.factories import PREFIXES as _PREFIXES
from kdfair.models.factories import Factory, register_model, register_prefix

__all__ = ["Factory", "bankable", "build_model", "get_factory", "is_builtin", "model_names",
           "register_model", "register_prefix"]


@functools.cache
def _builtin() -> frozenset[str]:
    """Import every model module (each registers its family); the names they registered."""
    for info in pkgutil.iter_modules(kdfair.models.__path__):
        importlib.import_module(f"kdfair.models.{info.name}")
    return frozenset(n for n, f in _FACTORIES.items() if f.__module__.startswith("kdfair.models."))


def model_names() -> list[str]:
    _builtin()
    return sorted(_FACTORIES)


def is_builtin(name: str) -> bool:
    """Whether ``name`` is an architecture every process knows (not one registered at run time)."""
    if ":" in name:
        return name.split(":", 1)[0] in _prefixes()
    return name in _builtin() and _FACTORIES[name].__module__.startswith("kdfair.models.")


def _prefixes() -> list[str]:
    _builtin()
    return sorted(_PREFIXES)


def get_factory(name: str) -> Factory:
    """The factory of ``name``: a registered name, or ``family:model`` (torchvision, timm, hf)."""
    if name not in _FACTORIES:
        _builtin()
    if name in _FACTORIES:
        return _FACTORIES[name]
    prefix, colon, rest = name.partition(":")
    if colon and prefix in _PREFIXES:
        return _PREFIXES[prefix](rest)
    close = difflib.get_close_matches(name, model_names(), n=4, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown architecture {name!r}{hint}; built in: "
                      f"{', '.join(model_names())}; or any model by name as "
                      f"{', '.join(p + ':<name>' for p in _prefixes())}")


register_name_check("arch", get_factory)


def build_model(
    name: str, num_classes: int, input_shape: tuple[int, ...], members: int = 1, **options
) -> nn.Module:
    """Build architecture ``name`` for ``num_classes`` outputs and inputs of ``input_shape``."""
    banked = {"members": members} if members != 1 else {}  # a factory need not take members
    try:
        return get_factory(name)(
            num_classes=num_classes, input_shape=tuple(input_shape), **banked, **options
        )
    except TypeError as err:
        raise ConfigError(f"model {name!r}: bad options {options}: {err}") from None


def bankable(name: str, num_classes: int, input_shape: tuple[int, ...], **options) -> bool:
    """Whether the architecture's factory builds grouped banks (``members`` > 1)."""
    try:
        bank = build_model(name, num_classes, input_shape, members=2, **options)
    except Exception:  # noqa: BLE001 - any factory refusing members > 1 means "no bank"
        return False
    return getattr(bank, "members", 1) == 2
