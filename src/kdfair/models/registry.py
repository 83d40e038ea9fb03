"""Model registry: architecture name -> factory.

A factory is called as ``factory(num_classes=..., input_shape=(C, H, W), members=G, **options)``
and returns an ``nn.Module``. Small models support ``members`` > 1: one module holding G independent
members (see ``kdfair.models.bank``); others accept only ``members=1``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch.nn as nn

from kdfair.errors import ConfigError

Factory = Callable[..., nn.Module]

# module that registers each architecture on import
_BUILTIN: dict[str, str] = {
    "lenet5": "kdfair.models.lenet",
    **{f"resnet{d}": "kdfair.models.cifar_resnet" for d in (8, 14, 20, 32, 56, 110)},
    **{
        n: "kdfair.models.torchvision_models"
        for n in ("resnet18", "resnet50", "densenet121", "densenet169", "vit_b_16", "tinyvit")
    },
    **{n: "kdfair.models.text" for n in ("bert", "distilbert", "hf")},
}
_FACTORIES: dict[str, Factory] = {}


def register_model(name: str, factory: Factory | None = None):
    """Register ``factory`` under ``name``; usable as a decorator."""

    def deco(f: Factory) -> Factory:
        _FACTORIES[name] = f
        return f

    return deco(factory) if factory is not None else deco


def model_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_FACTORIES))


def get_factory(name: str) -> Factory:
    if name not in _FACTORIES and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
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
