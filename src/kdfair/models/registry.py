"""Model registry: architecture name -> factory, derived from the model modules themselves.

A factory is called as ``factory(num_classes=..., input_shape=(C, H, W), members=G, **options)``
and returns an ``nn.Module``. Small models support ``members`` > 1: one module holding G independent
members (see ``kdfair.models.bank``); others accept only ``members=1``.

Every module of ``kdfair.models`` registers its family with ``register_model`` when imported, so
adding one file adds a model family. The modules are imported on the first lookup.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable

import torch.nn as nn

import kdfair.models
from kdfair.errors import ConfigError

Factory = Callable[..., nn.Module]
_FACTORIES: dict[str, Factory] = {}


def register_model(name: str, factory: Factory | None = None):
    """Register ``factory`` under ``name``; usable as a decorator."""

    def deco(f: Factory) -> Factory:
        _FACTORIES[name] = f
        return f

    return deco(factory) if factory is not None else deco


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
    return name in _builtin() and _FACTORIES[name].__module__.startswith("kdfair.models.")


def get_factory(name: str) -> Factory:
    if name not in _FACTORIES:
        _builtin()
    if name not in _FACTORIES:
        raise ConfigError(f"unknown architecture {name!r}; allowed: {', '.join(model_names())}")
    return _FACTORIES[name]


def build_model(
    name: str, num_classes: int, input_shape: tuple[int, ...], members: int = 1, **options
) -> nn.Module:
    """Build architecture ``name`` for ``num_classes`` outputs and inputs of ``input_shape``."""
    try:
        return get_factory(name)(
            num_classes=num_classes, input_shape=tuple(input_shape), members=members, **options
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
