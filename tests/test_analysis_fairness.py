"""Group fairness against Fairlearn on the same predictions."""

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    selection_rate,
)
from sklearn.metrics import accuracy_score

from kdfair.analysis.fairness import (
    binary_fairness,
    bootstrap_group_means,
    group_table,
    ovr_fairness,
    ovr_rates,
    run_fairness,
)


def _data(n=600, c=4, groups=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, c, n))
    g = rng.integers(0, groups, n)
    g[rng.random(n) < 0.05] = -1  # in no group
    return y, pred, g


def _fairlearn_ovr(y, pred, g, c):
    keep = g >= 0
    dpd, eod = [], []
    for k in range(c):
        yt, yp = (y[keep] == k).astype(int), (pred[keep] == k).astype(int)
        dpd.append(demographic_parity_difference(yt, yp, sensitive_features=g[keep]))
        eod.append(equalized_odds_difference(yt, yp, sensitive_features=g[keep]))
    return np.array(dpd), np.array(eod)


def test_one_vs_rest_matches_fairlearn_class_by_class():
    y, pred, g = _data()
    r = ovr_rates(y, pred, g, 4)
    dpd, eod = _fairlearn_ovr(y, pred, g, 4)
    np.testing.assert_allclose(r.dpd(), dpd, atol=1e-12)
    np.testing.assert_allclose(r.eod(), eod, atol=1e-12)
    mean_dpd, mean_eod, undefined = ovr_fairness(y, pred, g, 4)
    assert mean_dpd == pytest.approx(dpd.mean()) and mean_eod == pytest.approx(eod.mean())
    assert undefined == 0
    assert run_fairness(y, pred, g, 4)[:3] == pytest.approx((mean_dpd, mean_eod, 0))


def test_empty_cells_follow_fairlearn_and_are_counted():
    y, pred, g = _data(n=300, c=5, groups=4, seed=1)
    y[(g == 2) & (y == 3)] = 4  # group 2 has no input of class 3
    r = ovr_rates(y, pred, g, 5)
    dpd, eod = _fairlearn_ovr(y, pred, g, 5)
    np.testing.assert_allclose(r.eod(), eod, atol=1e-12)
    np.testing.assert_allclose(r.dpd(), dpd, atol=1e-12)
    assert r.undefined == 1


def test_binary_uses_fairlearn_and_agrees_with_one_vs_rest():
    y, pred, g = _data(c=2, seed=2)
    dpd, eod = binary_fairness(y, pred, g)
    keep = g >= 0
    assert dpd == pytest.approx(demographic_parity_difference(
        y[keep], pred[keep], sensitive_features=g[keep]))
    assert eod == pytest.approx(equalized_odds_difference(
        y[keep], pred[keep], sensitive_features=g[keep]))
    o_dpd, o_eod, _ = ovr_fairness(y, pred, g, 2)
    assert (o_dpd, o_eod) == pytest.approx((dpd, eod))
    assert run_fairness(y, pred, g, 2)[:2] == pytest.approx((dpd, eod))
    y[(g == 1)] = 1  # group 1 now has no negatives: counted once, not once per class
    assert run_fairness(y, pred, g, 2)[2] == 1


def test_weights_are_fairlearn_sample_weights():
    y, pred, g = _data(c=2, seed=3)
    w = np.random.default_rng(0).integers(0, 3, len(y)).astype(float)
    keep = g >= 0
    expected = equalized_odds_difference(y[keep], pred[keep], sensitive_features=g[keep],
                                         sample_weight=w[keep])
    assert ovr_fairness(y, pred, g, 2, weights=w)[1] == pytest.approx(expected)


@pytest.mark.parametrize("c", [2, 4])
def test_group_table_matches_metricframe(c):
    y, pred, g = _data(c=c, seed=4)
    names = ["young", "old", "other"]
    table = group_table(ovr_rates(y, pred, g, c), names, binary=c == 2).set_index("group")
    keep = g >= 0
    metrics = {"n": count, "accuracy": accuracy_score}
    if c == 2:
        metrics["selection_rate"] = selection_rate
    mf = MetricFrame(metrics=metrics, y_true=y[keep], y_pred=pred[keep],
                     sensitive_features=np.array(names, dtype=object)[g[keep]])
    expected = mf.by_group
    for name in names:
        for col in metrics:
            assert table.loc[name, col] == pytest.approx(expected.loc[name, col]), (name, col)
    assert ("selection_rate" in table) == (c == 2)


def test_single_group_has_zero_difference():
    y, pred, _ = _data()
    assert ovr_fairness(y, pred, np.zeros(len(y), int), 4)[:2] == (0.0, 0.0)


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    y, pred, g = _data(n=400, c=3, seed=5)
    preds = [pred, np.where(np.random.default_rng(1).random(len(y)) < 0.1, 0, pred)]
    dpd, eod = bootstrap_group_means(y, preds, g, 3, replicates=200, seed=7)
    dpd2, _ = bootstrap_group_means(y, preds, g, 3, replicates=200, seed=7)
    np.testing.assert_array_equal(dpd, dpd2)
    point = np.mean([ovr_fairness(y, p, g, 3)[1] for p in preds])
    lo, hi = np.percentile(eod, [2.5, 97.5])
    assert lo < point < hi
