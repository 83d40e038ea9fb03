"""Group fairness against Fairlearn on the same predictions."""

import fairlearn.metrics
import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, count, selection_rate
from sklearn.metrics import accuracy_score

from kdfair.analysis import measures
from kdfair.analysis.fairness import (
    bootstrap_group_means,
    group_table,
    ovr_rates,
    reduce_classes,
    undefined_cells,
)

GROUP = measures.of("group")


def _data(n=600, c=4, groups=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, c, n))
    g = rng.integers(0, groups, n)
    g[rng.random(n) < 0.05] = -1  # in no group
    return y, pred, g


def _fairlearn(m: measures.Measure, y, pred, g, **kw) -> float:
    keep = g >= 0
    fn = getattr(fairlearn.metrics, m.fairlearn)
    w = kw.pop("sample_weight", None)
    return fn(y[keep], pred[keep], sensitive_features=g[keep],
              **({"sample_weight": w[keep]} if w is not None else {}))


def _fairlearn_ovr(m: measures.Measure, y, pred, g, c) -> np.ndarray:
    """Fairlearn's binary function on each class against the rest."""
    return np.array([_fairlearn(m, (y == k).astype(int), (pred == k).astype(int), g)
                     for k in range(c)])


def _values(y, pred, g, c, weights=None) -> dict[str, float]:
    return measures.group_values(ovr_rates(y, pred, g, c, weights), binary=c == 2)


def test_every_group_measure_names_its_fairlearn_function():
    assert GROUP and all(callable(getattr(fairlearn.metrics, m.fairlearn)) for m in GROUP)


@pytest.mark.parametrize("m", GROUP, ids=lambda m: m.key)
def test_one_vs_rest_matches_fairlearn_class_by_class(m):
    y, pred, g = _data()
    r = ovr_rates(y, pred, g, 4)
    expected = _fairlearn_ovr(m, y, pred, g, 4)
    np.testing.assert_allclose(m.per_class(r), expected, atol=1e-12)
    assert _values(y, pred, g, 4)[m.key] == pytest.approx(np.nanmean(expected))
    assert r.undefined == 0


@pytest.mark.parametrize("m", GROUP, ids=lambda m: m.key)
def test_empty_cells_follow_fairlearn_and_are_counted(m):
    y, pred, g = _data(n=300, c=5, groups=4, seed=1)
    y[(g == 2) & (y == 3)] = 4  # group 2 has no input of class 3
    r = ovr_rates(y, pred, g, 5)
    np.testing.assert_allclose(m.per_class(r), _fairlearn_ovr(m, y, pred, g, 5), atol=1e-12)
    assert r.undefined == 1


@pytest.mark.parametrize("m", GROUP, ids=lambda m: m.key)
def test_binary_equals_fairlearn(m):
    y, pred, g = _data(c=2, seed=2)
    assert _values(y, pred, g, 2)[m.key] == pytest.approx(_fairlearn(m, y, pred, g))
    y[(g == 1)] = 1  # group 1 now has no negatives: counted once, not once per class
    assert undefined_cells(ovr_rates(y, pred, g, 2), binary=True) == 1
    assert _values(y, pred, g, 2)[m.key] == pytest.approx(_fairlearn(m, y, pred, g),
                                                          nan_ok=True)


@pytest.mark.parametrize("m", GROUP, ids=lambda m: m.key)
def test_weights_are_fairlearn_sample_weights(m):
    y, pred, g = _data(c=2, seed=3)
    w = np.random.default_rng(0).integers(0, 3, len(y)).astype(float)
    assert _values(y, pred, g, 2, weights=w)[m.key] == pytest.approx(
        _fairlearn(m, y, pred, g, sample_weight=w))


def test_a_class_without_a_value_is_left_out_of_the_mean():
    assert reduce_classes(np.array([0.2, np.nan, 0.4]), binary=False) == pytest.approx(0.3)
    assert np.isnan(reduce_classes(np.array([np.nan, np.nan]), binary=False))
    assert reduce_classes(np.array([0.9, 0.1]), binary=True) == 0.1  # the positive class


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


def test_single_group_has_no_difference():
    y, pred, _ = _data()
    values = _values(y, pred, np.zeros(len(y), int), 4)
    assert values["dpd"] == values["eod"] == 0.0


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    y, pred, g = _data(n=400, c=3, seed=5)
    preds = [pred, np.where(np.random.default_rng(1).random(len(y)) < 0.1, 0, pred)]
    draws = bootstrap_group_means(y, preds, g, 3, 200, lambda r: measures.group_values(
        r, False), seed=7)
    again = bootstrap_group_means(y, preds, g, 3, 200, lambda r: measures.group_values(
        r, False), seed=7)
    np.testing.assert_array_equal(draws["dpd"], again["dpd"])
    point = np.mean([_values(y, p, g, 3)["eod"] for p in preds])
    lo, hi = np.percentile(draws["eod"], [2.5, 97.5])
    assert lo < point < hi


def test_ratios_by_hand_and_where_fairlearn_and_kdfair_part():
    # two groups of 4, binary: group 0 selects 2 of 4, group 1 selects 1 of 4 -> ratio 0.5
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([1, 0, 1, 0, 1, 0, 0, 0])
    g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    v = _values(y, pred, g, 2)
    assert v["dp_ratio"] == pytest.approx(0.5)  # fails the '80 % rule'
    assert v["eo_ratio"] == pytest.approx(0.0)  # FPR 1/2 vs 0 -> 0; TPR ratio 1
    assert v["eopp"] == pytest.approx(0.0)  # TPR 1/2 in both groups
    # no true positive anywhere: the TPR ratio is 0 / 0; Fairlearn then says NaN, kdfair the
    # FPR ratio (documented in fairness.equalized_odds_ratio)
    pred = np.array([0, 0, 1, 0, 0, 0, 1, 1])
    eo = measures.get("eo_ratio")
    assert np.isnan(_fairlearn(eo, y, pred, g))
    assert _values(y, pred, g, 2)["eo_ratio"] == pytest.approx(0.5)  # FPR 1/2 vs 2/2


@pytest.mark.parametrize("c", [2, 3])
def test_every_group_measure_of_a_study_equals_fairlearn(tmp_path, c):
    """fairness_runs.csv's numbers, recomputed run by run with Fairlearn from the stored files
    (one-vs-rest and averaged for three classes)."""
    from analysis_fixtures import stored_predictions, write_store

    import kdfair
    from kdfair.config import AnalysisConfig

    root = write_store(tmp_path / "s", num_classes=c, temperatures=(2.0,), features=False,
                       attributes={"colour": ["red", "green", "blue"]}, shuffle_index=True)
    with np.load(root / "attributes.npz") as z:
        g = z["colour"][np.argsort(z["index"])]
    runs = kdfair.analyze(root, AnalysisConfig(seed_resamples=0))["fairness_runs"]
    stored = stored_predictions(root)
    assert len(runs) == len(stored)
    for _, row in runs.iterrows():
        _, pred, y = stored[row["run_id"]]
        for m in GROUP:
            expected = (_fairlearn(m, y, pred, g) if c == 2
                        else np.nanmean(_fairlearn_ovr(m, y, pred, g, c)))
            assert row[m.key] == pytest.approx(m.scale * expected), (row["run_id"], m.key)


def test_every_group_measure_of_an_audit_equals_fairlearn(tmp_path):
    """The same on an audit: predicted classes made elsewhere, groups given as codes."""
    import kdfair

    rng = np.random.default_rng(5)
    n, c = 400, 3
    y = rng.integers(0, c, n)
    g = rng.integers(0, 2, n)

    def pred(acc):
        return np.where(rng.random(n) < acc, y, rng.integers(0, c, n))

    preds = {"teacher": [pred(0.9), pred(0.9)], "nds": [pred(0.7), pred(0.75)],
             "ds": {2.0: [pred(0.8), pred(0.78)]}}
    root = kdfair.audit(y, teacher=preds["teacher"], nds=preds["nds"], ds=preds["ds"],
                        groups={"colour": g}, out=tmp_path, write_report=False)
    runs = kdfair.analyze(root, {"seed_resamples": 0})["fairness_runs"]
    made = {("teacher", s): p for s, p in enumerate(preds["teacher"])}
    made |= {("nds", s): p for s, p in enumerate(preds["nds"])}
    made |= {("ds", s): p for s, p in enumerate(preds["ds"][2.0])}
    assert len(runs) == len(made)
    for _, row in runs.iterrows():
        p = made[(row["role"], row["seed"])]
        for m in GROUP:
            expected = np.nanmean(_fairlearn_ovr(m, y, p, g, c))
            assert row[m.key] == pytest.approx(m.scale * expected), (row["run_id"], m.key)


def test_the_long_table_holds_the_wide_tables_numbers(tmp_path):
    from analysis_fixtures import write_store

    import kdfair

    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), seeds=(0, 1, 2),
                       attributes={"colour": ["red", "green"]})
    t = kdfair.analyze(root)
    long = t["measures"]
    assert set(long["measure"]) >= {"accuracy", "dpd", "eod", "dp_ratio", "individual"}
    eod = long[(long["measure"] == "eod") & (long["role"] == "nds")].iloc[0]
    wide = t["fairness"][(t["fairness"]["role"] == "nds")].iloc[0]
    assert (eod["attribute"], eod["unit"]) == ("colour", "%")
    assert (eod["mean"], eod["ci_low"], eod["ci_high"]) == (
        wide["eod_mean"], wide["eod_ci_low"], wide["eod_ci_high"])
    acc = long[(long["measure"] == "accuracy") & (long["role"] == "ds")].iloc[0]
    assert acc["mean"] == t["accuracy"].query("role == 'ds'")["acc_mean"].iloc[0]
