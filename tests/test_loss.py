import math

import torch
import torch.nn.functional as F

from kdfair.train.loss import kd_loss


def _hand(s, t, y, T, alpha, t2):
    """KD loss computed by hand with plain Python floats."""
    total_soft, total_hard = 0.0, 0.0
    for i in range(len(y)):
        ps = [math.exp(v / T) for v in s[i]]
        pt = [math.exp(v / T) for v in t[i]]
        zs, zt = sum(ps), sum(pt)
        ps, pt = [p / zs for p in ps], [p / zt for p in pt]
        total_soft += sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
        q = [math.exp(v) for v in s[i]]
        total_hard += -math.log(q[y[i]] / sum(q))
    soft, hard = total_soft / len(y), total_hard / len(y)
    return alpha * soft * (T * T if t2 else 1) + (1 - alpha) * hard


def test_kd_loss_matches_hand_computation():
    s = [[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [0.0, 0.5, 1.5]]
    y = [1, 2]
    for T in (1.0, 4.0):
        for t2 in (True, False):
            got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), T, 0.8, t2)
            assert math.isclose(float(got), _hand(s, t, y, T, 0.8, t2), rel_tol=1e-5)


def test_t2_scaling_multiplies_soft_term_by_t_squared():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    on = kd_loss(s, t, y, 3.0, alpha=1.0, t2_scaling=True)
    off = kd_loss(s, t, y, 3.0, alpha=1.0, t2_scaling=False)
    assert torch.isclose(on, off * 9)


def test_alpha_zero_is_cross_entropy_and_identical_logits_give_zero_soft_term():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    y = torch.randint(0, 4, (6,), generator=g)
    assert torch.isclose(kd_loss(s, t, y, 5.0, alpha=0.0), F.cross_entropy(s, y))
    assert float(kd_loss(s, s, y, 5.0, alpha=1.0)) < 1e-6
