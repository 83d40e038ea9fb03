"""What a study can show: detectable difference, chance gaps, regime and ceiling, and the trend
findings the report leaves out because the seeds cannot resolve them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from scipy import stats

from kdfair.analysis import capability as cap
from kdfair.analysis.measures import group_values
from kdfair.analysis.trends import span_and_resolution


@pytest.mark.parametrize(("sd_a", "n_a", "sd_b", "n_b"), [(1.0, 5, 1.0, 5), (0.5, 3, 2.0, 4)])
def test_detectable_difference_has_the_stated_power(sd_a, n_a, sd_b, n_b) -> None:
    """Monte Carlo with scipy's Welch test: at the detectable difference, 80 % of tests pass."""
    delta = cap.detectable_difference(sd_a, n_a, sd_b, n_b, level=0.05)
    rng = np.random.default_rng(0)
    reps = 20_000
    a = rng.normal(0.0, sd_a, size=(reps, n_a))
    b = rng.normal(delta, sd_b, size=(reps, n_b))
    p = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    # the noncentral-t formula is the standard approximation: within 3 points of 80 %
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.03)
    # and the power falls below 80 % at a smaller difference
    b_small = rng.normal(0.7 * delta, sd_b, size=(reps, n_b))
    assert np.mean(stats.ttest_ind(a, b_small, axis=1, equal_var=False).pvalue < 0.05) < 0.7


def test_detectable_difference_edges() -> None:
    assert math.isnan(cap.detectable_difference(1.0, 1, 1.0, 5))
    assert cap.detectable_difference(0.0, 3, 0.0, 3) == 0.0
    # it scales with the spread
    assert cap.detectable_difference(2.0, 5, 2.0, 5) == pytest.approx(
        2 * cap.detectable_difference(1.0, 5, 1.0, 5))


def test_chance_gaps_are_fairlearn_values_of_shuffled_groups() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    pred = np.where(rng.random(300) < 0.8, y, 1 - y)
    g = rng.integers(0, 3, 300)
    g[:10] = -1  # no group: never shuffled in
    draws = cap.chance_gaps(y, pred, g, 2, lambda r: group_values(r, True), permutations=5,
                            seed=3)
    dpd, eod = draws["dpd"], draws["eod"]
    # replay the shuffles (within each class) and ask Fairlearn
    rng2 = np.random.default_rng([3, 20_000_001])
    keep = np.flatnonzero(g >= 0)
    strata = [np.flatnonzero((y == c) & (g >= 0)) for c in (0, 1)]
    for i in range(5):
        s = g.copy()
        for idx in strata:
            s[idx] = g[idx][rng2.permutation(len(idx))]
        # every (group, class) cell keeps its size: base rates are the test set's own
        for c in (0, 1):
            np.testing.assert_array_equal(np.bincount(s[y == c][s[y == c] >= 0], minlength=3),
                                          np.bincount(g[y == c][g[y == c] >= 0], minlength=3))
        ref = equalized_odds_difference(y[keep], pred[keep], sensitive_features=s[keep])
        assert eod[i] == pytest.approx(ref)
        ref_dpd = demographic_parity_difference(y[keep], pred[keep], sensitive_features=s[keep])
        assert dpd[i] == pytest.approx(ref_dpd)
    assert (eod > 0).all()


def test_smallest_cell_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 1, 2, 0])
    g = np.array([0, 1, 0, 1, 1, 0, -1])
    # cells (group, class): (0,0)=1 (0,1)=1 (0,2)=1 (1,0)=1 (1,1)=2 (1,2)=0
    assert cap.smallest_cell(y, g, 3) == 0
    assert cap.smallest_cell(y[:5], g[:5], 2) == 1


def _accuracy(teacher: float, nds: float) -> pd.DataFrame:
    return pd.DataFrame({"role": ["teacher", "nds"], "T": [np.nan, np.nan],
                         "acc_mean": [teacher, nds]})


def test_regime_and_ceiling() -> None:
    room = cap.regime_rows(_accuracy(100.0, 90.33), 9.67, "trifeature")
    assert room[0]["verdict"] == "room" and room[0]["value"] == pytest.approx(9.67)
    assert "paper, trifeature: 9.67" in room[0]["sentence"]
    top = cap.regime_rows(_accuracy(100.0, 99.93), 9.67, "trifeature")
    assert top[0]["verdict"] == "ceiling"
    assert top[0]["sentence"].startswith("At the ceiling")
    # an NDS close to its (weak) teacher is also a ceiling: distillation has nothing to add
    assert cap.regime_rows(_accuracy(80.0, 79.5), None, None)[0]["verdict"] == "ceiling"
    weak = cap.regime_rows(_accuracy(50.0, 80.0), None, None)[0]
    assert weak["verdict"] == "weak teacher" and "30.00 points below the NDS" in weak["sentence"]


def test_resolution_row_matches_detectable_difference() -> None:
    runs = pd.DataFrame({
        "role": ["nds"] * 3 + ["ds"] * 6, "T": [np.nan] * 3 + [1.0] * 3 + [4.0] * 3,
        "accuracy": [90.0, 91.0, 92.0, 93.0, 93.5, 94.0, 92.0, 94.0, 96.0]})
    row = cap.resolution_rows(runs, n_test=1000, level=0.05)[0]
    pooled = math.sqrt((np.var([93, 93.5, 94], ddof=1) + np.var([92, 94, 96], ddof=1)) / 2)
    assert row["value"] == pytest.approx(cap.detectable_difference(1.0, 3, pooled, 3))
    assert "one test image is 0.1 points" in row["sentence"]


def test_span_and_resolution_of_a_trend() -> None:
    t = np.repeat([1.0, 2.0, 4.0], 5)
    v = np.concatenate([np.full(5, 99.90), np.full(5, 99.93), np.full(5, 99.97)])
    v = v + np.tile([-0.01, 0.0, 0.01, 0.0, 0.0], 3)
    span, res = span_and_resolution(t, v, 0.05)
    assert span == pytest.approx(0.07)
    sd = np.std([-0.01, 0.0, 0.01, 0.0, 0.0], ddof=1)
    assert res == pytest.approx(cap.detectable_difference(sd, 5, sd, 5))
    one_per_t = span_and_resolution(np.array([1.0, 2.0, 4.0]), np.array([3.0, 5.0, 6.0]), 0.05)
    assert one_per_t[0] == 3.0 and math.isnan(one_per_t[1])


def test_a_fairness_trend_within_the_chance_floor_says_it_may_follow_accuracy():
    from kdfair.analysis.common import Analysis
    from kdfair.analysis.text import trend_findings
    from kdfair.config import AnalysisConfig

    trend = pd.DataFrame([{
        "quantity": q, "label": f"DS {q[:3].upper()} 'sex'", "unit": "%", "range": "all T",
        "n_points": 15, "n_T": 5, "rho": 0.9, "p": 0.001, "p_bh": 0.002, "significant": True,
        "direction": "rises", "span": 5.0, "resolution": 1.0, "min_p": np.nan,
        "partial_rho": np.nan, "partial_p": np.nan} for q in ("eod:sex", "dpd:sex")])

    def said(eod_verdict: str) -> list[str]:
        cap = pd.DataFrame([cap_row("eod", "sex", eod_verdict),
                            cap_row("dpd", "sex", "above chance")])
        a = Analysis(store=None, options=AnalysisConfig(), options_source="test",
                     tables={"trends": trend, "capability": cap}, notes=[])
        found = trend_findings(a)
        assert [f.code for f in found] == ["trend", "trend", "trend_family"]
        return [f.text for f in found]

    noisy = said("noise")
    assert noisy[0].startswith("DS EOD 'sex' rises with T")
    assert "may follow accuracy, not fairness" in noisy[0]
    assert "may follow accuracy" not in noisy[1]  # DPD: the NDS's lies above chance
    assert "may follow accuracy" not in said("above chance")[0]
    # a trend that persists controlling for accuracy is not said to follow it; its level is
    trend.loc[0, ["partial_rho", "partial_p"]] = [0.7, 0.001]
    persists = said("noise")[0]
    assert "may follow accuracy" not in persists
    assert ("controlling for accuracy it persists (partial Spearman ρ = 0.70, p = 0.001), but "
            "the NDS's value lies within what chance gives on this test set") in persists


def cap_row(measure: str, attribute: str, verdict: str) -> dict:
    return {"aspect": "noise floor", "quantity": f"chance {measure} '{attribute}'",
            "measure": measure, "attribute": attribute, "value": 10.0, "unit": "%",
            "verdict": verdict, "sentence": ""}
