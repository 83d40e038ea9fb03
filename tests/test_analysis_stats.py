"""Seed-level statistics against independent computations: scipy's paired and permutation tests,
hand-worked bootstrap distributions, exact Spearman permutation p-values."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdfair.analysis.classwise import classwise_tables, compare_classes, plan_test
from kdfair.analysis.seedstats import seed_ci, trend_test
from kdfair.analysis.trends import smallest_p
from kdfair.config import AnalysisConfig


def test_paired_t_matches_ttest_rel():
    rng = np.random.default_rng(5)
    ref = rng.normal(0.7, 0.05, (6, 12))
    ds = ref + rng.normal(0.01, 0.02, (6, 12))  # seed-matched: DS seed k near NDS seed k
    d = compare_classes(ref, ds, paired=True)
    res = stats.ttest_rel(ds, ref, axis=0)
    np.testing.assert_allclose(d["p"], res.pvalue, rtol=1e-10)
    np.testing.assert_allclose(d["t"], res.statistic, rtol=1e-10)
    # pairing matters: Welch on the same numbers sees the seed spread, not the differences
    assert d["p"].median() < compare_classes(ref, ds)["p"].median()


def test_paired_tables_match_runs_by_seed_not_by_row_order():
    rng = np.random.default_rng(6)
    seeds = [3, 1, 2, 0]
    nds = rng.uniform(0.5, 0.9, (4, 5))
    ds = nds + rng.normal(0.02, 0.01, (4, 5))
    order = [2, 0, 3, 1]  # DS rows in another seed order than the NDS rows
    runs = pd.DataFrame({"role": ["nds"] * 4 + ["ds"] * 4, "T": [np.nan] * 4 + [2.0] * 4,
                         "seed": seeds + [seeds[i] for i in order]})
    class_acc = np.vstack([nds, ds[order]])
    runs["accuracy"] = class_acc.mean(1)
    counts, detail = classwise_tables(runs, class_acc, pairing="paired")
    rows = detail[(detail["comparison"] == "nds_vs_ds") & (detail["quantity"] == "raw")]
    np.testing.assert_allclose(rows["p"], stats.ttest_rel(ds, nds, axis=0).pvalue, rtol=1e-10)
    assert set(counts.loc[counts["comparison"] == "nds_vs_ds", "test"]) == {"paired t"}
    assert set(counts.loc[counts["comparison"] == "teacher_vs_ds", "test"]) == {"none"}


def test_paired_needs_two_shared_seeds():
    p = plan_test("nds", 3, 3, pairing="paired", n_pairs=1)
    assert p.test == "none" and "paired test needs at least 2" in p.reason


def test_permutation_matches_scipy_and_an_exact_count_by_hand():
    rng = np.random.default_rng(7)
    ref, ds = rng.normal(0.6, 0.05, (5, 4)), rng.normal(0.65, 0.05, (5, 4))
    d = compare_classes(ref, ds, method="permutation")
    for c in range(4):
        res = stats.permutation_test((ds[:, c], ref[:, c]),
                                     lambda x, y: np.mean(x) - np.mean(y),
                                     permutation_type="independent", n_resamples=np.inf)
        assert d.loc[c, "p"] == pytest.approx(res.pvalue, rel=1e-12)
    # by hand: 3 vs 3 runs; only the split that puts all 1s on one side is as extreme
    d = compare_classes(np.zeros((3, 1)), np.ones((3, 1)), method="permutation")
    assert d.loc[0, "p"] == pytest.approx(2 / math.comb(6, 3))
    assert d.loc[0, "testable"] and d.loc[0, "constant_different"]


def test_paired_permutation_is_a_sign_flip_test():
    diff = np.array([0.02, 0.03, -0.01, 0.04, 0.05])
    ref = np.full((5, 1), 0.5)
    d = compare_classes(ref, ref + diff[:, None], paired=True, method="permutation")
    obs = abs(diff.mean())
    flips = [abs((diff * np.array(s)).mean()) for s in itertools.product((1, -1), repeat=5)]
    assert d.loc[0, "p"] == pytest.approx(np.mean(np.array(flips) >= obs - 1e-12))


def test_constant_but_different_classes_are_counted_not_silently_null():
    teacher = np.array([[1.0, 0.9], [1.0, 0.8], [1.0, 0.85]])
    ds = np.array([[0.95, 0.9], [0.95, 0.7], [0.95, 0.8]])
    welch = compare_classes(teacher, ds)
    assert not welch.loc[0, "testable"] and welch.loc[0, "constant_different"]
    assert not welch.loc[0, "significant"]
    perm = compare_classes(teacher, ds, method="permutation")
    assert perm.loc[0, "testable"] and perm.loc[0, "p"] == pytest.approx(0.1)
    same = compare_classes(np.ones((3, 1)), np.ones((3, 1)), method="permutation")
    assert not same.loc[0, "testable"] and not same.loc[0, "constant_different"]


def test_bootstrap_ci_of_two_values_is_the_hand_worked_distribution():
    # resampling [0, 10]: mean 0 (p 1/4), 5 (p 1/2), 10 (p 1/4) -> 2.5 % and 97.5 % points 0, 10
    low, high = seed_ci(np.array([0.0, 10.0]), 4000, seed=0, label="x", method="bootstrap")
    assert (low[0], high[0]) == (0.0, 10.0)


def test_bootstrap_ci_matches_the_enumerated_bootstrap():
    v = np.array([1.0, 2.0, 6.0])
    means = [np.mean(c) for c in itertools.product(v, repeat=3)]  # 27 equally likely
    exact = np.percentile(means, [2.5, 97.5], method="inverted_cdf")  # 1 and 6 (1/27 each)
    low, high = seed_ci(v, 40000, seed=3, label="m", method="bootstrap")
    assert (low[0], high[0]) == (exact[0], exact[1]) == (1.0, 6.0)
    # 256 resamples: mean 1 once, 1.25 four, 1.5 six times -> the 2.5 % point (7th) is 1.5
    w = np.array([1.0, 2.0, 6.0, 7.0])
    means = np.sort([np.mean(c) for c in itertools.product(w, repeat=4)])
    assert np.percentile(means, 2.5, method="inverted_cdf") == 1.5
    assert seed_ci(w, 40000, seed=3, label="m", method="bootstrap")[0][0] == pytest.approx(
        1.5, abs=0.25)


def test_bootstrap_ci_is_reproducible_and_undefined_for_one_seed():
    v = np.random.default_rng(0).normal(size=(5, 3))
    def boot(x, seed):
        return seed_ci(x, 500, seed=seed, label="ds 2", method="bootstrap")

    a, b = boot(v, 1), boot(v, 1)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(boot(v, 2)[0], a[0])
    assert np.isnan(boot(v[:1], 1)[0]).all()


def test_t_interval_is_scipys_interval_of_the_mean():
    v = np.random.default_rng(0).normal(size=(3, 4))
    low, high = seed_ci(v, 1, method="t")
    for j in range(4):
        ref = stats.t.interval(0.95, 2, loc=v[:, j].mean(), scale=stats.sem(v[:, j]))
        assert (low[j], high[j]) == pytest.approx(ref)
    same = seed_ci(np.array([[2.0], [2.0], [2.0]]), 1)  # no spread: zero width
    assert same[0][0] == same[1][0] == 2.0
    assert np.isnan(seed_ci(v[:1], 1)[0]).all()  # one seed: no interval
    assert np.isnan(seed_ci(v, 0)[0]).all()  # seed_resamples 0: no intervals asked for


def test_trend_test_equals_spearman_and_the_exact_permutation_p():
    t = np.array([1.0, 2.0, 4.0, 8.0, 20.0])
    v = np.array([1.0, 3.0, 4.0, 2.0, 5.0])
    rho, p, n = trend_test(t, v, resamples=9999)
    assert rho == pytest.approx(stats.spearmanr(t, v).statistic)
    perms = [stats.spearmanr(t, np.array(s)).statistic for s in itertools.permutations(v)]
    assert p == pytest.approx(np.mean(np.abs(perms) >= abs(rho) - 1e-12))
    assert n == 5 and smallest_p(5) == pytest.approx(2 / 120)


def test_trend_test_is_undefined_for_constant_or_too_few_values():
    assert math.isnan(trend_test([1, 2, 4], [3, 3, 3])[1])
    assert math.isnan(trend_test([1, 2], [1, 2])[1])


def test_old_alpha_means_significance():
    assert AnalysisConfig.model_validate({"alpha": 0.01}).significance == 0.01
    assert AnalysisConfig.model_validate({"alpha": 0.01, "significance": 0.2}).significance \
        == 0.2


def test_paired_teacher_comparison_follows_teacher_run_id():
    rng = np.random.default_rng(8)
    teachers = rng.uniform(0.6, 0.9, (3, 4))
    ds = teachers[[2, 0, 1]] + 0.01 * rng.normal(size=(3, 4))  # DS seed k distils teacher 2, 0, 1
    runs = pd.DataFrame({"role": ["teacher"] * 3 + ["ds"] * 3, "T": [np.nan] * 3 + [2.0] * 3,
                         "seed": [0, 1, 2, 0, 1, 2], "run_id": ["t0", "t1", "t2", "d0", "d1", "d2"],
                         "teacher_run_id": [None, None, None, "t2", "t0", "t1"]})
    class_acc = np.vstack([teachers, ds])
    runs["accuracy"] = class_acc.mean(1)
    _, detail = classwise_tables(runs, class_acc, pairing="paired")
    rows = detail[(detail["comparison"] == "teacher_vs_ds") & (detail["quantity"] == "raw")]
    expected = stats.ttest_rel(ds, teachers[[2, 0, 1]], axis=0).pvalue
    np.testing.assert_allclose(rows["p"], expected, rtol=1e-10)


def test_an_interval_stays_inside_what_the_measure_can_take():
    """A t-interval of rates near 0 (or accuracies near 100 %) is clipped to the measure's
    range; an unbounded column keeps its interval."""
    from kdfair.analysis.common import by_group

    df = pd.DataFrame({"role": "nds", "T": np.nan, "cf_flip": [0.0, 0.0, 3.0],
                       "accuracy": [100.0, 100.0, 99.0], "other": [0.0, 0.0, 3.0]})
    t = by_group(df, ["cf_flip", "accuracy", "other"], resamples=1).iloc[0]
    raw = stats.t.interval(0.95, 2, loc=1.0, scale=stats.sem([0.0, 0.0, 3.0]))
    assert (t["cf_flip_ci_low"], t["cf_flip_ci_high"]) == pytest.approx((0.0, raw[1]))
    assert (t["other_ci_low"], t["other_ci_high"]) == pytest.approx(raw)
    assert t["accuracy_ci_high"] == 100.0 and t["accuracy_ci_low"] < 100.0
