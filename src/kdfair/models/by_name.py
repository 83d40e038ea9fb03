"""Any torchvision, timm or Hugging Face model by name: ``arch: torchvision:<name>``,
``timm:<name>`` or ``hf:<name>``.

Model options are passed through to the library's constructor (``torchvision.models.get_model``,
``timm.create_model``, transformers' ``from_pretrained``). Pretrained weights are used only from
the local cache or a given file unless the model has ``download: true``:

- torchvision: ``weights: <name>`` (e.g. ``IMAGENET1K_V1``) from the torch hub cache; the head is
  replaced when the data set has another number of classes;
- timm: ``pretrained: true`` from the Hugging Face cache (its safetensors file; nothing is
  fetched unless ``download: true``);
- hf: ``<name>`` is the hub name or a local directory (``kdfair.models.text``).

A local ``checkpoint:`` (safetensors) works for all three; it is loaded by the caller. Every
model here trains one member per bank (``members`` = 1).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch.nn as nn
from torchvision import models as tvm

from kdfair.errors import ConfigError
from kdfair.models.factories import Factory, register_prefix
from kdfair.models.text import _factory as text_factory
from kdfair.models.torchvision_models import pretrained_state


def _unknown(family: str, name: str, names: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"; close names: {', '.join(f'{family}:{c}' for c in close)}" if close else ""
    return ConfigError(f"unknown architecture '{family}:{name}': {family} has no model "
                       f"{name!r}{hint}")


def _one(name: str, members: int) -> None:
    if members != 1:
        raise ConfigError(f"model {name!r} trains one member at a time (members={members})")


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear] | None:
    """(parent, attribute, layer) of the model's last nn.Linear, its classification head."""
    found = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, attr, child)
    return found


def torchvision_factory(name: str) -> Factory:
    names = tvm.list_models()
    if name not in names:
        raise _unknown("torchvision", name, names)

    def make(num_classes: int, input_shape: tuple[int, ...], members: int = 1,
             weights: str | None = None, download: bool = False, checkpoint: Any = None,
             **options: Any) -> nn.Module:
        _one(f"torchvision:{name}", members)
        if weights is None:
            return tvm.get_model(name, weights=None, num_classes=num_classes, **options)
        state, n_out = pretrained_state(name, weights, download)
        model = tvm.get_model(name, weights=None, num_classes=n_out, **options)
        model.load_state_dict(state)
        head = _last_linear(model)
        if n_out != num_classes and head is not None:
            parent, attr, old = head
            setattr(parent, attr, nn.Linear(old.in_features, num_classes))
        return model

    return make


def _cached_timm_weights(timm: Any, name: str) -> str | None:
    """The local file of timm model ``name``'s pretrained weights in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    for filename in ("model.safetensors", "open_clip_model.safetensors"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def timm_factory(name: str) -> Factory:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"model 'timm:{name}' needs timm, an optional extra: "
                          "pip install 'kdfair[timm]'") from None
    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models())

    def make(num_classes: int, input_shape: tuple[int, ...], members: int = 1,
             pretrained: bool = False, download: bool = False, checkpoint: Any = None,
             **options: Any) -> nn.Module:
        _one(f"timm:{name}", members)
        if pretrained and not download:  # the cached safetensors file, or nothing: no network
            cached = _cached_timm_weights(timm, name)
            if cached is None:
                raise ConfigError(
                    f"model 'timm:{name}': pretrained weights are not in the Hugging Face cache "
                    "($HF_HOME); set `download: true` under the model to fetch them, or give a "
                    "local safetensors file as `checkpoint:`")
            options = {**options, "pretrained_cfg_overlay": {"file": cached}}
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=num_classes,
                                     in_chans=int(input_shape[0]), **options)
        except (OSError, RuntimeError, ValueError, TypeError) as err:
            raise ConfigError(f"model 'timm:{name}': {err}") from None

    return make


def hf_factory(name: str) -> Factory:
    base = text_factory("hf")

    def make(num_classes: int, input_shape: tuple[int, ...] = (), members: int = 1,
             checkpoint: Any = None, **options: Any) -> nn.Module:
        return base(num_classes, input_shape, members, pretrained=name, **options)

    return make


register_prefix("torchvision", torchvision_factory)
register_prefix("timm", timm_factory)
register_prefix("hf", hf_factory)
