"""torchvision ResNet / DenseNet / ViT and timm TinyViT behind the model registry."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn as nn
from torchvision import models as tvm

from kdfair.errors import ConfigError
from kdfair.models.registry import build_model
from kdfair.models.torchvision_models import hub_file

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny forward passes (tests/conftest.py)


def _forward(model: nn.Module, shape: tuple[int, ...], n: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(n, *shape))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "densenet121", "densenet169"])
def test_cnn_small_input_stem_and_forward(arch):
    m = build_model(arch, 7, (3, 16, 16), small_input=True)
    stem = m.conv1 if arch.startswith("resnet") else m.features.conv0
    pool = m.maxpool if arch.startswith("resnet") else m.features.pool0
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and isinstance(pool, nn.Identity)
    assert _forward(m, (3, 16, 16), n=1).shape == (1, 7)


def test_cnn_default_is_the_imagenet_stem():
    m = build_model("resnet18", 5, (3, 64, 64))
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    assert isinstance(m.maxpool, nn.MaxPool2d)
    assert _forward(m, (3, 64, 64)).shape == (2, 5)
    one = build_model("resnet18", 4, (1, 32, 32), small_input=True)  # other channel counts
    assert _forward(one, (1, 32, 32)).shape == (2, 4)


def test_small_input_gives_larger_feature_maps():
    """The stem adaptation is real: 32 px stays 32 px into layer1 instead of 8 px."""
    seen = {}
    for small in (False, True):
        m = build_model("resnet18", 3, (3, 32, 32), small_input=small).eval()
        m.layer1.register_forward_hook(lambda mod, i, o, s=small: seen.__setitem__(s, o.shape))
        _forward(m, (3, 32, 32), n=1)
    assert seen[True][-1] == 32 and seen[False][-1] == 8


def test_vit_small_patches_and_224():
    m = build_model("vit_b_16", 10, (3, 32, 32), patch_size=8)
    assert m.patch_size == 8 and _forward(m, (3, 32, 32)).shape == (2, 10)
    assert m.encoder.pos_embedding.shape == (1, 1 + 16, 768)  # 4 x 4 patches + class token
    big = build_model("vit_b_16", 3, (3, 224, 224))
    assert big.encoder.pos_embedding.shape == (1, 1 + 196, 768) and big.heads.head.out_features == 3


def test_option_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"model\.foo: unknown option; allowed: .*small_input"):
        build_model("resnet18", 3, (3, 32, 32), foo=1)
    with pytest.raises(ConfigError, match=r"model\.small_input"):
        build_model("densenet121", 3, (3, 32, 32), small_input="sometimes")
    with pytest.raises(ConfigError, match="members=2"):
        build_model("resnet50", 3, (3, 32, 32), members=2)
    with pytest.raises(ConfigError, match="multiple of patch_size=16"):
        build_model("vit_b_16", 3, (3, 40, 40))
    with pytest.raises(ConfigError, match="small_input"):
        build_model("vit_b_16", 3, (3, 32, 32), small_input=True, patch_size=4)


# --- pretrained weights -------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache of our own; any download attempt fails the test."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_network(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


def _put(url: str, state: dict) -> None:
    p = hub_file(url)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, p)


def test_weights_missing_without_download_explains_both_fixes(hub):
    with pytest.raises(ConfigError) as e:
        build_model("resnet50", 1000, (3, 224, 224), weights="IMAGENET1K_V1")
    msg = str(e.value)
    assert "download: true" in msg and str(hub / "resnet50-0676ba61.pth") in msg
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in msg


def test_weights_from_the_hub_cache_and_head_replacement(hub):
    src = tvm.resnet18(num_classes=1000)
    _put(tvm.ResNet18_Weights.IMAGENET1K_V1.url, src.state_dict())
    same = build_model("resnet18", 1000, (3, 224, 224), weights="IMAGENET1K_V1")
    assert torch.equal(same.conv1.weight, src.conv1.weight)
    assert torch.equal(same.fc.weight, src.fc.weight)
    five = build_model("resnet18", 5, (3, 224, 224), weights="DEFAULT")
    assert torch.equal(five.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    assert five.fc.out_features == 5
    assert _forward(five, (3, 64, 64)).shape == (2, 5)


def test_densenet_checkpoint_old_key_names_are_renamed(hub):
    src = tvm.densenet121(num_classes=1000)
    # torchvision's published DenseNet files: 'norm.1'-style keys, no num_batches_tracked
    old = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
           for k, v in src.state_dict().items() if "num_batches_tracked" not in k}
    assert any("norm.1." in k for k in old)
    _put(tvm.DenseNet121_Weights.IMAGENET1K_V1.url, old)
    m = build_model("densenet121", 1000, (3, 224, 224), weights="IMAGENET1K_V1")
    w = src.features.denseblock1.denselayer1.norm1.weight
    assert torch.equal(m.features.denseblock1.denselayer1.norm1.weight, w)


def test_download_true_fetches_through_torch_hub_with_hash_check(hub, monkeypatch):
    calls = []
    state = tvm.resnet18(num_classes=1000).state_dict()

    def fake(url, **kw):
        calls.append((url, kw))
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake)
    m = build_model("resnet18", 1000, (3, 224, 224), weights="IMAGENET1K_V1", download=True)
    assert torch.equal(m.conv1.weight, state["conv1.weight"])
    assert calls[0][0].endswith("resnet18-f37072fd.pth") and calls[0][1]["check_hash"]


def test_weights_errors(hub):
    with pytest.raises(ConfigError, match=r"model\.weights: .*'IMAGENET9K'.*IMAGENET1K_V1"):
        build_model("resnet50", 10, (3, 224, 224), weights="IMAGENET9K")
    with pytest.raises(ConfigError, match="small_input"):
        build_model("resnet18", 10, (3, 32, 32), weights="IMAGENET1K_V1", small_input=True)
    with pytest.raises(ConfigError, match="224 x 224"):
        build_model("vit_b_16", 10, (3, 32, 32), weights="IMAGENET1K_V1", patch_size=16)


# --- TinyViT (timm, optional) -------------------------------------------------------------------


def test_tinyvit_without_timm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ConfigError, match=r"pip install kdfair\[timm\]"):
        build_model("tinyvit", 10, (3, 64, 64))


def test_tinyvit_builds_through_timm_create_model(monkeypatch):
    calls = []

    def create_model(name, **kw):
        calls.append((name, kw))
        return nn.Linear(4, kw["num_classes"])

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    m = build_model("tinyvit", 10, (3, 64, 64))
    assert isinstance(m, nn.Linear) and m.out_features == 10
    name, kw = calls[0]
    assert name == "tiny_vit_5m_224" and kw["pretrained"] is False
    assert kw["img_size"] == 64 and kw["in_chans"] == 3
    build_model("tinyvit", 10, (3, 224, 224), variant="tiny_vit_21m_224")
    assert calls[1][0] == "tiny_vit_21m_224"
    with pytest.raises(ConfigError, match="checkpoint"):
        build_model("tinyvit", 10, (3, 224, 224), weights="IMAGENET1K_V1")
