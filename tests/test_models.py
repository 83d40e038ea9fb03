import pytest
import torch

from kdfair.errors import ConfigError
from kdfair.models.bank import bank_from_members, member_state
from kdfair.models.registry import build_model


@pytest.mark.parametrize("arch", ["lenet5", "resnet8", "resnet20"])
def test_bank_equals_its_members(arch):
    torch.manual_seed(0)
    plain = [build_model(arch, 7, (3, 32, 32)) for _ in range(3)]
    bank = bank_from_members(build_model(arch, 7, (3, 32, 32), members=3), plain)
    xs = torch.randn(3, 5, 3, 32, 32)
    out = bank(xs.permute(1, 0, 2, 3, 4).reshape(5, 9, 32, 32))  # train mode: batch statistics
    ref = torch.stack([m(xs[i]) for i, m in enumerate(plain)], 1)
    assert out.shape == (5, 3, 7)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # taking a member back out gives exactly the plain model's state
    for k, v in member_state(bank, 1).items():
        torch.testing.assert_close(v, plain[1].state_dict()[k])


@pytest.mark.parametrize("depth,params", [(20, 0.27e6), (56, 0.85e6), (110, 1.7e6)])
def test_cifar_resnet_sizes_match_he_et_al(depth, params):
    m = build_model(f"resnet{depth}", 10, (3, 32, 32))
    n = sum(p.numel() for p in m.parameters())
    assert abs(n - params) / params < 0.03
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_lenet_rejects_tiny_inputs_and_unknown_arch_is_named():
    with pytest.raises(ValueError, match="at least 16"):
        build_model("lenet5", 10, (3, 8, 8))
    with pytest.raises(ConfigError, match="unknown architecture 'resnet7'.*lenet5"):
        build_model("resnet7", 10, (3, 32, 32))
