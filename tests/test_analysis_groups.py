"""kdfair.analyze's per-group tables (analysis/groups.py) against Fairlearn's MetricFrame and
fairness functions: per model × attribute (and intersection) × group × class, seed means and
Student-t intervals."""

import fairlearn.metrics as flm
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score

import kdfair
from kdfair.errors import ConfigError

N, K = 300, 3
SEX, AGE = ["female", "male"], ["young", "middle", "old"]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    rng = np.random.default_rng(3)
    y = rng.integers(0, K, N)
    sex, age = rng.integers(0, 2, N), rng.integers(0, 3, N)
    age[:5] = -1  # unknown: left out of age and of the intersection

    def logits():
        z = rng.normal(size=(N, K)).astype(np.float32)
        z[np.arange(N), y] += 1.5 + 0.5 * sex
        return z

    preds = {"teacher": [logits(), logits(), logits()], "nds": [logits(), logits()],
             "ds": {4: [logits(), logits()]}}
    out = tmp_path_factory.mktemp("groups")
    kdfair.audit(y, teacher=preds["teacher"], nds=preds["nds"], ds=preds["ds"],
                 groups={"sex": sex, "age": age}, group_names={"sex": SEX, "age": AGE},
                 out=out, name="g", write_report=False)
    tables = kdfair.analyze(out / "g", groups=["sex", "age"])
    return tables, y, {"sex": sex, "age": age}, preds, out / "g"


def _t_interval(v):
    v = np.asarray(v, float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return v.mean() - half, v.mean() + half


METRICS = {"selection_rate": flm.selection_rate, "tpr": flm.true_positive_rate,
           "fpr": flm.false_positive_rate, "accuracy": accuracy_score, "count": flm.count}


def _frames(y, seeds, sensitive, keep, c):
    """MetricFrame.by_group of class c for each seed (rows of inputs in ``keep``)."""
    return [flm.MetricFrame(metrics=METRICS, y_true=(y[keep] == c).astype(int),
                            y_pred=(z.argmax(1)[keep] == c).astype(int),
                            sensitive_features=sensitive).by_group for z in seeds]


@pytest.mark.parametrize("role,temperature", [("teacher", None), ("nds", None), ("ds", 4.0)])
def test_group_rates_equal_metricframe_per_class_with_seed_means_and_t_intervals(
        audited, role, temperature):
    tables, y, codes, preds, _ = audited
    rates = tables["group_rates"]
    seeds = preds[role] if temperature is None else preds["ds"][4]
    model = rates[(rates["role"] == role) & ((rates["T"] == temperature) if temperature
                                             else rates["T"].isna())]
    for attr, names in (("sex", SEX), ("age", AGE)):
        keep = codes[attr] >= 0
        sensitive = np.asarray(names)[codes[attr][keep]]
        for c in range(K):
            frames = _frames(y, seeds, sensitive, keep, c)
            for g in names:
                row = model[(model["attribute"] == attr) & (model["group"] == g)
                            & (model["class"] == c)]
                assert len(row) == 1 and row["n_runs"].item() == len(seeds)
                assert row["n"].item() == frames[0].loc[g, "count"]
                assert row["positives"].item() == ((y[keep] == c) & (sensitive == g)).sum()
                for key in ("selection_rate", "tpr", "fpr", "accuracy"):
                    per_seed = [100 * f.loc[g, key] for f in frames]
                    assert row[f"{key}_mean"].item() == pytest.approx(np.mean(per_seed),
                                                                      abs=1e-9)
                    assert row[f"{key}_std"].item() == pytest.approx(np.std(per_seed, ddof=1),
                                                                     abs=1e-9)
                    low, high = _t_interval(per_seed)
                    assert row[f"{key}_ci_low"].item() == pytest.approx(max(low, 0), abs=1e-9)
                    assert row[f"{key}_ci_high"].item() == pytest.approx(min(high, 100),
                                                                         abs=1e-9)


FUNCTIONS = {"dpd": (flm.demographic_parity_difference, 100),
             "eod": (flm.equalized_odds_difference, 100),
             "dp_ratio": (flm.demographic_parity_ratio, 1),
             "eo_ratio": (flm.equalized_odds_ratio, 1),
             "eopp": (flm.equal_opportunity_difference, 100)}


def test_group_measures_per_class_are_fairlearn_s_differences_and_ratios(audited):
    tables, y, codes, preds, _ = audited
    m = tables["group_measures"]
    teacher = m[(m["role"] == "teacher") & (m["attribute"] == "age")]
    keep = codes["age"] >= 0
    for c in range(K):
        row = teacher[teacher["class"] == c]
        for key, (fn, scale) in FUNCTIONS.items():
            per_seed = [scale * fn((y[keep] == c).astype(int), (z.argmax(1)[keep] == c)
                                   .astype(int), sensitive_features=codes["age"][keep])
                        for z in preds["teacher"]]
            assert row[f"{key}_mean"].item() == pytest.approx(np.mean(per_seed), abs=1e-9)
            low, high = _t_interval(per_seed)
            assert row[f"{key}_ci_low"].item() == pytest.approx(max(low, 0), abs=1e-9)


def test_intersectional_groups_equal_metricframe_with_two_sensitive_features(audited):
    tables, y, codes, preds, _ = audited
    rates = tables["group_rates"]
    inter = rates[(rates["attribute"] == "sex × age") & (rates["role"] == "nds")]
    keep = codes["age"] >= 0
    sensitive = pd.DataFrame({"sex": np.asarray(SEX)[codes["sex"][keep]],
                              "age": np.asarray(AGE)[codes["age"][keep]]})
    assert set(inter["group"]) == {f"{s} × {a}" for s in SEX for a in AGE}
    for c in range(K):
        frames = _frames(y, preds["nds"], sensitive, keep, c)
        for (s, a), _ in frames[0].iterrows():
            row = inter[(inter["group"] == f"{s} × {a}") & (inter["class"] == c)]
            assert row["n"].item() == frames[0].loc[(s, a), "count"]
            assert row["tpr_mean"].item() == pytest.approx(
                np.mean([100 * f.loc[(s, a), "tpr"] for f in frames]), abs=1e-9)
    # its group measures are Fairlearn's over the intersection's groups
    m = tables["group_measures"]
    row = m[(m["attribute"] == "sex × age") & (m["role"] == "nds") & (m["class"] == 1)]
    per_seed = [flm.demographic_parity_ratio((y[keep] == 1).astype(int),
                                             (z.argmax(1)[keep] == 1).astype(int),
                                             sensitive_features=sensitive)
                for z in preds["nds"]]
    assert row["dp_ratio_mean"].item() == pytest.approx(np.mean(per_seed), abs=1e-9)


def test_unknown_attributes_in_an_intersection_name_the_known_ones(audited):
    *_, root = audited
    with pytest.raises(ConfigError, match="groups: unknown attribute\\(s\\) 'race'; an "
                                          "intersection names two or more of the study's "
                                          "attributes \\((sex, age|age, sex)\\)"):
        kdfair.analyze(root, groups=["sex", "race"])
    with pytest.raises(ConfigError, match="names fewer than two attributes"):
        kdfair.analyze(root, groups=[["sex"]])
