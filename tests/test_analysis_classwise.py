"""Class-wise statistics against independent computations (scipy, hand formulas, simulation)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdfair.analysis.classwise import (
    class_accuracy,
    classwise_tables,
    compare_classes,
    count,
    hedges_g,
    plan_test,
    relative_accuracy,
)


def _bh(p):
    """Benjamini–Hochberg adjusted p-values, written out by hand."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p)
    adj = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(adj[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1)
    return out


def test_class_accuracy_counts_each_class():
    labels = np.array([0, 0, 1, 1, 1, 3])
    pred = np.array([0, 1, 1, 1, 0, 3])
    acc = class_accuracy(pred, labels, 4)
    assert acc[0] == 0.5 and acc[1] == pytest.approx(2 / 3) and acc[3] == 1.0
    assert math.isnan(acc[2])  # no test input of class 2


def test_welch_matches_scipy_column_by_column():
    rng = np.random.default_rng(1)
    ref, ds = rng.normal(0.6, 0.05, (5, 30)), rng.normal(0.62, 0.08, (4, 30))
    d = compare_classes(ref, ds, significance=0.05)
    for c in range(30):
        res = stats.ttest_ind(ds[:, c], ref[:, c], equal_var=False)
        assert d.loc[c, "t"] == pytest.approx(res.statistic, rel=1e-10)
        assert d.loc[c, "p"] == pytest.approx(res.pvalue, rel=1e-10)
        assert d.loc[c, "significant"] == (res.pvalue < 0.05)
    np.testing.assert_allclose(d["p_bh"], _bh(d["p"]), rtol=1e-12)
    c = count(d)
    assert c["n_significant"] == c["n_higher"] + c["n_lower"]
    assert c["n_higher"] == int(((d["p"] < 0.05) & (ds.mean(0) > ref.mean(0))).sum())


def test_hedges_g_by_hand():
    ref = np.array([[1.0], [2.0], [3.0]])
    ds = np.array([[3.0], [4.0], [5.0], [6.0]])
    pooled = math.sqrt((2 * 1.0 + 3 * (5 / 3)) / 5)  # var(ref) = 1, var(ds) = 5/3
    df = 5
    j = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    assert hedges_g(ref, ds)[0] == pytest.approx((4.5 - 2.0) / pooled * j)
    assert 0.84 < j < 0.86  # close to the usual approximation 1 - 3 / (4 df - 1) = 0.842


def test_zero_variance_in_both_groups_is_untestable_not_significant():
    ref = np.array([[1.0, 0.5, 0.4], [1.0, 0.6, 0.4], [1.0, 0.7, 0.4]])
    ds = np.array([[1.0, 0.9, 0.8], [1.0, 0.8, 0.8], [1.0, 0.9, 0.8]])
    d = compare_classes(ref, ds)
    assert list(d["testable"]) == [False, True, False]
    assert not d.loc[0, "significant"] and not d.loc[2, "significant"]  # means differ in 2
    assert np.isnan(d.loc[2, "p"]) and np.isnan(d.loc[2, "hedges_g"])
    c = count(d)
    assert c["n_untestable"] == 2 and c["n_testable"] == 1
    # BH runs over the testable classes only
    assert d.loc[1, "p_bh"] == pytest.approx(d.loc[1, "p"])


def test_one_sample_matches_scipy():
    rng = np.random.default_rng(2)
    teacher = rng.uniform(0.5, 0.9, (1, 8))
    ds = rng.normal(0.7, 0.05, (5, 8))
    d = compare_classes(teacher, ds, one_sample=True)
    for c in range(8):
        res = stats.ttest_1samp(ds[:, c], teacher[0, c])
        assert d.loc[c, "p"] == pytest.approx(res.pvalue, rel=1e-10)
        assert d.loc[c, "t"] == pytest.approx(res.statistic, rel=1e-10)


def test_planted_effect_is_detected_and_null_mostly_is_not():
    rng = np.random.default_rng(3)
    n_classes = 2000
    ref = rng.normal(0.7, 0.03, (5, n_classes))
    null_ds = rng.normal(0.7, 0.03, (5, n_classes))
    rate = compare_classes(ref, null_ds, significance=0.05)["significant"].mean()
    assert 0.025 < rate < 0.075  # Welch keeps its level (about 5 %)
    planted = null_ds.copy()
    planted[:, :50] += 0.25  # eight standard deviations
    d = compare_classes(ref, planted, significance=0.05)
    assert d.loc[:49, "significant"].all() and (d.loc[:49, "direction"] == "higher").all()
    assert d.loc[:49, "significant_bh"].all()
    assert d.loc[50:, "significant_bh"].mean() < 0.01  # BH removes almost all false positives


def test_relative_accuracy_couples_classes():
    # one class drops; overall drops; the other classes' relative accuracy rises
    class_acc = np.array([[0.8, 0.8, 0.8, 0.8], [0.4, 0.8, 0.8, 0.8]])
    overall = class_acc.mean(1)
    rel = relative_accuracy(class_acc, overall)
    assert (rel[1, 1:] > rel[0, 1:]).all()


def test_plan_test_reasons():
    assert plan_test("nds", 5, 5).test == "welch"
    assert plan_test("teacher", 1, 5).test == "one-sample"
    p = plan_test("nds", 1, 5)
    assert p.test == "none" and "at least 2" in p.reason
    assert plan_test("nds", 5, 1).test == "none"
    assert "switched off" in plan_test("nds", 5, 5, tests_enabled=False).reason


def test_classwise_tables_cover_every_t_comparison_and_quantity():
    rng = np.random.default_rng(4)
    runs = pd.DataFrame({"role": ["teacher"] * 3 + ["nds"] * 3 + ["ds"] * 6,
                         "T": [np.nan] * 6 + [2.0] * 3 + [4.0] * 3})
    class_acc = rng.uniform(0.5, 0.9, (12, 6))
    runs["accuracy"] = class_acc.mean(1)
    counts, detail = classwise_tables(runs, class_acc, significance=0.05)
    assert len(counts) == 2 * 2 * 2 and (counts["test"] == "welch").all()
    assert len(detail) == 2 * 2 * 2 * 6
    rows = detail[(detail["comparison"] == "nds_vs_ds") & (detail["T"] == 4.0)
                  & (detail["quantity"] == "raw")]
    res = stats.ttest_ind(class_acc[9:12], class_acc[3:6], axis=0, equal_var=False)
    np.testing.assert_allclose(rows["p"], res.pvalue, rtol=1e-10)
