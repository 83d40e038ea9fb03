"""torchvision ResNet-18/50, DenseNet-121/169, ViT-B/16, and TinyViT (timm), behind the registry.

Every factory is ``factory(num_classes, input_shape, members=1, **options)`` and builds one model
(``members`` > 1 is refused: these are trained one per process). Options:

- ``small_input`` (ResNets, DenseNets; default false): the usual stem for 32- or 64-pixel images,
  a 3x3 stride-1 first convolution and no max-pool. Explicit, never guessed from the input size.
- ``weights`` (torchvision name, e.g. ``IMAGENET1K_V1``; not TinyViT) and ``download``: pretrained
  weights are read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and fetched only with
  ``download: true``. The classification head is replaced when ``num_classes`` differs from the
  weights' 1000 classes. Loading uses ``torch.load(weights_only=True)``: nothing is unpickled.
- ``patch_size`` (ViT-B/16, default 16): a smaller patch makes small inputs cheap (e.g. 32 px, 4).
- ``variant`` (TinyViT, default ``tiny_vit_5m_224``): the timm model name.

A local ``checkpoint:`` is loaded by the caller, not here; the option is accepted and ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field
from torchvision import models as tvm

from kdfair.errors import ConfigError
from kdfair.models.factories import register_model
from kdfair.options import validate_options


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str | None = None
    download: bool = False
    checkpoint: Path | None = None  # loaded by the caller


class CnnOptions(_Options):
    small_input: bool = False


class VitOptions(_Options):
    patch_size: int = Field(16, ge=1)


class TinyVitOptions(_Options):
    variant: str = "tiny_vit_5m_224"


def _one_member(arch: str, members: int) -> None:
    if members != 1:
        raise ConfigError(
            f"model {arch!r} trains one model per process (members={members}); bundles of "
            "several members are only supported by the small CIFAR ResNets and LeNet-5"
        )


def hub_file(url: str) -> Path:
    """Where torch hub keeps the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def pretrained_state(arch: str, name: str, download: bool) -> tuple[dict[str, Any], int]:
    """The state dict of torchvision weights ``name`` for ``arch`` and their class count.

    Read from the hub cache; fetched (hash checked) only with ``download``; otherwise a
    ConfigError says how to allow the download or where to put the file.
    """
    try:
        enum = tvm.get_model_weights(arch)
    except ValueError:
        raise ConfigError(f"model {arch!r} has no torchvision weights") from None
    try:
        w = enum.verify(name)
    except KeyError:
        allowed = ", ".join(m for m in enum.__members__)
        raise ConfigError(f"model.weights: {arch} has no weights {name!r}; "
                          f"allowed: {allowed}") from None
    path = hub_file(w.url)
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, or a pickle that is not plain tensors (refused)
            raise ConfigError(f"model {arch!r}: {path} is not a readable weights file "
                              f"({type(err).__name__}); delete it and fetch it again "
                              "(`download: true`), nothing in it was executed") from None
    elif download:
        try:
            state = torch.hub.load_state_dict_from_url(
                w.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
            )
        except Exception as err:
            raise ConfigError(f"model {arch!r}: downloading weights {name} from {w.url} failed "
                              f"({err}); download that file yourself and put it at {path}"
                              ) from None
    else:
        raise ConfigError(
            f"model {arch!r}: pretrained weights {name} are not in the torch hub cache "
            f"(expected {path}). Set `download: true` under the model to let kdfair fetch "
            f"them from {w.url}, or download that file and put it at {path} "
            "($TORCH_HOME moves the cache)."
        )
    return state, len(w.meta["categories"])


_DENSE_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _fix_densenet_keys(state: dict[str, Any]) -> dict[str, Any]:
    """torchvision's DenseNet checkpoints use old key names ('norm.1'); rename as it does."""
    out = {}
    for k, v in state.items():
        m = _DENSE_OLD_KEY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _head(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent module, attribute) of the final linear layer."""
    if isinstance(model, tvm.ResNet):
        return model, "fc"
    if isinstance(model, tvm.DenseNet):
        return model, "classifier"
    if isinstance(model, tvm.VisionTransformer):
        return model.heads, "head"
    raise TypeError(type(model))


def _build_cnn(arch: str, num_classes: int, input_shape: tuple[int, ...], members: int,
               options: dict[str, Any]) -> nn.Module:
    _one_member(arch, members)
    opts = validate_options(CnnOptions, options, "model", f"model {arch!r}")
    in_ch = int(input_shape[0])
    pretrained = opts.weights is not None
    if pretrained and (opts.small_input or in_ch != 3):
        raise ConfigError(
            f"model {arch!r}: pretrained weights need the standard stem and 3 input channels; "
            f"drop `small_input: true` (input has {in_ch} channels) or the weights"
        )
    n_out = num_classes
    state = None
    if pretrained:
        state, n_out = pretrained_state(arch, opts.weights, opts.download)
    model = getattr(tvm, arch)(weights=None, num_classes=n_out)
    if isinstance(model, tvm.ResNet):
        if opts.small_input:
            model.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
        elif in_ch != 3:
            model.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
    else:
        feats = model.features
        width = feats.conv0.out_channels
        if opts.small_input:
            feats.conv0 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
            feats.pool0 = nn.Identity()
        elif in_ch != 3:
            feats.conv0 = nn.Conv2d(in_ch, width, 7, 2, 3, bias=False)
    if state is not None:
        if isinstance(model, tvm.DenseNet):
            state = _fix_densenet_keys(state)
        model.load_state_dict(state)
        if n_out != num_classes:
            parent, attr = _head(model)
            old = getattr(parent, attr)
            setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    return model


def _cnn_factory(arch: str):
    def make(num_classes: int, input_shape: tuple[int, ...], members: int = 1,
             **options: Any) -> nn.Module:
        return _build_cnn(arch, num_classes, input_shape, members, options)

    make.__name__ = arch
    make.__doc__ = f"torchvision {arch} (options: small_input, weights, download)."
    return make


for _arch in ("resnet18", "resnet50", "densenet121", "densenet169"):
    register_model(_arch, _cnn_factory(_arch))


@register_model("vit_b_16")
def vit_b_16(num_classes: int, input_shape: tuple[int, ...], members: int = 1,
             **options: Any) -> nn.Module:
    """torchvision ViT-B/16 (12 layers, 12 heads, width 768) for square inputs.

    ``patch_size`` must divide the input side. Pretrained weights need 224 px and patch 16.
    """
    _one_member("vit_b_16", members)
    opts = validate_options(VitOptions, options, "model", "model 'vit_b_16'")
    c, h, w = (int(v) for v in input_shape)
    if c != 3 or h != w or h % opts.patch_size:
        raise ConfigError(
            f"model 'vit_b_16' needs square 3-channel inputs whose side is a multiple of "
            f"patch_size={opts.patch_size}; got {tuple(input_shape)}"
        )
    if opts.weights is not None:
        if h != 224 or opts.patch_size != 16:
            raise ConfigError("model 'vit_b_16': pretrained weights need 224 x 224 inputs and "
                              f"patch_size 16; got {h} x {w}, patch_size {opts.patch_size}")
        state, n_out = pretrained_state("vit_b_16", opts.weights, opts.download)
        model = tvm.vit_b_16(weights=None, num_classes=n_out)
        model.load_state_dict(state)
        if n_out != num_classes:
            model.heads.head = nn.Linear(model.heads.head.in_features, num_classes)
        return model
    return tvm.VisionTransformer(
        image_size=h, patch_size=opts.patch_size, num_layers=12, num_heads=12, hidden_dim=768,
        mlp_dim=3072, num_classes=num_classes,
    )


@register_model("tinyvit")
def tinyvit(num_classes: int, input_shape: tuple[int, ...], members: int = 1,
            **options: Any) -> nn.Module:
    """TinyViT through timm (optional extra ``kdfair[timm]``), trained from scratch."""
    _one_member("tinyvit", members)
    opts = validate_options(TinyVitOptions, options, "model", "model 'tinyvit'")
    if opts.weights is not None:
        raise ConfigError(
            "model 'tinyvit': `weights` names torchvision weights, which TinyViT has none of; "
            "give a local safetensors file as `checkpoint:` instead"
        )
    try:
        import timm
    except ImportError:
        raise ConfigError(
            "model 'tinyvit' needs timm, an optional extra: pip install kdfair[timm]"
        ) from None
    try:
        return timm.create_model(opts.variant, pretrained=False, num_classes=num_classes,
                                 in_chans=int(input_shape[0]), img_size=int(input_shape[-1]))
    except RuntimeError as err:  # timm: unknown model name
        raise ConfigError(f"model.variant: timm cannot build {opts.variant!r}: {err}") from None
