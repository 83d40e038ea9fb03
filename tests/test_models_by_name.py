"""Any torchvision / timm / Hugging Face model by name: built offline with random weights,
trained through a study, and one clear message (with close names) for an unknown name."""

import pytest

from kdfair.config import experiment_from_dict
from kdfair.errors import ConfigError
from kdfair.models.registry import build_model, is_builtin
from tests.toy import toy_split

pytest.importorskip("timm")


@pytest.mark.parametrize("arch", ["torchvision:resnet18", "timm:resnet18"])
def test_a_model_by_name_trains_one_epoch_in_a_study(tmp_path, arch, one_thread):
    from kdfair import api

    train = {"epochs": 1, "batch_size": 32, "lr": 0.05}
    st = api.study("byname", toy_split(64, 0), toy_split(16, 1), toy_split(32, 2), arch,
                   "lenet5", temperatures=(4,), seeds=(0, 1), teacher_train=train,
                   student_train=train, out=tmp_path, device="cpu", write_report=False)
    assert len(st.done) == 6 and not st.failed
    spec = next((tmp_path / "byname" / "runs").glob("teacher-s0-*")) / "spec.json"
    assert f'"arch": "{arch}"' in spec.read_text()
    assert is_builtin(arch)


def test_options_pass_through_to_the_library():
    m = build_model("timm:resnet18", 7, (1, 16, 16), drop_rate=0.25)
    assert m.drop_rate == 0.25 and m.get_classifier().out_features == 7
    assert m.conv1.in_channels == 1
    tv = build_model("torchvision:resnet18", 5, (3, 16, 16), zero_init_residual=True)
    assert tv.fc.out_features == 5
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0 for b in tv.layer1)


@pytest.mark.parametrize("arch,close", [("timm:resnet19", "timm:resnet18"),
                                        ("torchvision:resnt18", "torchvision:resnet18"),
                                        ("lenet6", "lenet5")])
def test_an_unknown_name_is_one_message_with_close_names(arch, close):
    exp = {"name": "x", "dataset": {"name": "digits"}, "teacher": {"model": {"arch": arch}},
           "student": {"model": {"arch": "lenet5"}}}
    with pytest.raises(ConfigError) as err:
        experiment_from_dict(exp)
    msg = str(err.value)
    assert "teacher.model.arch" in msg and close in msg and msg.count("unknown architecture") == 1


def test_pretrained_weights_stay_offline_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="not in the torch hub cache.*download: true"):
        build_model("torchvision:resnet18", 10, (3, 32, 32), weights="IMAGENET1K_V1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="not in the Hugging Face cache.*download: true"):
        build_model("timm:resnet18", 10, (3, 32, 32), pretrained=True)
