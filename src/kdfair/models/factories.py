"""The table of model factories, and the two functions a model module registers with.

Model modules import this (never ``models.registry``, which imports them to find their models):
so the registry points down at the model modules, and they point down at this table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

Factory = Callable[..., nn.Module]
FACTORIES: dict[str, Factory] = {}
# "family:" prefix -> resolve(name after the colon) -> factory, e.g. torchvision:resnet18
PREFIXES: dict[str, Callable[[str], Factory]] = {}


def register_model(name: str, factory: Factory | None = None):
    """Register ``factory`` under ``name``; usable as a decorator."""

    def deco(f: Factory) -> Factory:
        FACTORIES[name] = f
        return f

    return deco(factory) if factory is not None else deco


def register_prefix(prefix: str, resolve: Callable[[str], Factory]) -> None:
    """Architectures ``<prefix>:<name>``: ``resolve(name)`` returns the factory, or raises a
    ConfigError naming close names when there is no such model."""
    PREFIXES[prefix] = resolve
