"""End to end: small run stores written in the documented format, analysed and reported."""

import json
import math

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from scipy import stats

from kdfair.analysis.report import analyze, write_report
from kdfair.config import AnalysisConfig
from kdfair.errors import StoreError
from tests.analysis_fixtures import stored_predictions, write_store

C = 6
FAST = AnalysisConfig(vector_figures=False)  # PNG only, except where the twins are checked


def planted(role, t, seed, c):
    """Teacher better everywhere; DS at T = 4 much better on class 0; T = 2 and 3 null."""
    if role == "teacher":
        return 0.9
    if role == "ds" and t == 4.0 and c == 0:
        return 0.97
    return 0.6


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("study"), num_classes=C, n_per_class=150,
                       temperatures=(2.0, 3.0, 4.0), accuracy=planted,
                       attributes={"colour": ["red", "green", "blue"]})


@pytest.fixture(scope="module")
def tables(store):
    return analyze(store)


def _class_acc(pred, labels):
    return np.array([np.mean(pred[labels == c] == c) for c in range(C)])


def test_classwise_p_values_equal_scipy_on_the_stored_predictions(store, tables):
    runs = stored_predictions(store)
    groups = {}
    for spec, pred, labels in runs.values():
        key = (spec["role"], spec["temperature"])
        acc = np.mean(pred == labels)
        groups.setdefault(key, {"raw": [], "relative": []})
        groups[key]["raw"].append(_class_acc(pred, labels))
        groups[key]["relative"].append(_class_acc(pred, labels) / acc)
    detail = tables["classwise"]
    for t in (2.0, 3.0, 4.0):
        for comparison, ref in (("nds_vs_ds", ("nds", None)), ("teacher_vs_ds", ("teacher", None))):
            for q in ("relative", "raw"):
                res = stats.ttest_ind(np.array(groups[("ds", t)][q]), np.array(groups[ref][q]),
                                      axis=0, equal_var=False)
                rows = detail[(detail["T"] == t) & (detail["comparison"] == comparison)
                              & (detail["quantity"] == q)].sort_values("class")
                np.testing.assert_allclose(rows["p"], res.pvalue, rtol=1e-9)
    acc = tables["accuracy"].set_index("role")
    nds = [np.mean(p == y) * 100 for s, p, y in runs.values() if s["role"] == "nds"]
    assert acc.loc["nds", "acc_mean"] == pytest.approx(np.mean(nds))
    assert acc.loc["nds", "acc_std"] == pytest.approx(np.std(nds, ddof=1))


def test_planted_effect_is_found_and_null_temperatures_mostly_are_not(tables):
    counts = tables["classwise_counts"].set_index(["comparison", "quantity", "T"])
    detail = tables["classwise"]
    hit = detail[(detail["comparison"] == "nds_vs_ds") & (detail["quantity"] == "raw")
                 & (detail["T"] == 4.0) & (detail["class"] == 0)].iloc[0]
    assert hit["significant"] and hit["direction"] == "higher" and hit["hedges_g"] > 2
    assert counts.loc[("nds_vs_ds", "raw", 4.0), "n_higher"] >= 1
    false_pos = sum(counts.loc[("nds_vs_ds", q, t), "n_significant"]
                    for q in ("raw",) for t in (2.0, 3.0))
    assert false_pos <= 2  # 12 null tests at 5 %: about 0.6 expected
    # the teacher is better in every class: raw #TC sees it, relative accuracy cannot
    assert counts.loc[("teacher_vs_ds", "raw", 2.0), "n_lower"] >= C - 1
    assert counts.loc[("teacher_vs_ds", "relative", 2.0), "n_significant"] <= 2


def test_fairness_equals_fairlearn_on_the_stored_predictions(store, tables):
    with np.load(store / "attributes.npz") as z:
        colour = z["colour"][np.argsort(z["index"])]
    fr = tables["fairness_runs"].set_index("run_id")
    keep = colour >= 0
    for run_id, (_, pred, labels) in list(stored_predictions(store).items())[:4]:
        dpd = np.mean([demographic_parity_difference(
            (labels[keep] == c).astype(int), (pred[keep] == c).astype(int),
            sensitive_features=colour[keep]) for c in range(C)])
        eod = np.mean([equalized_odds_difference(
            (labels[keep] == c).astype(int), (pred[keep] == c).astype(int),
            sensitive_features=colour[keep]) for c in range(C)])
        assert fr.loc[run_id, "dpd"] == pytest.approx(100 * dpd)
        assert fr.loc[run_id, "eod"] == pytest.approx(100 * eod)
    f = tables["fairness"]
    assert set(f["role"]) == {"teacher", "nds", "ds"} and (f["n_runs"] == 5).all()


def test_report_is_written_and_self_contained(store):
    r = write_report(store)
    assert r.md_path.exists() and r.html_path.exists()
    html = r.html_path.read_text()
    assert html.count("data:image/png;base64,") >= 6
    assert "src='accuracy" not in html and "<img src=\"" not in html
    md = r.md_path.read_text()
    for phrase in ("Welch", "Benjamini–Hochberg", "share of accuracy", "5 per temperature",
                   "one-vs-rest", "k = 10 nearest neighbours"):
        assert phrase in md, phrase
    names = {p.name for p in r.csv_paths}
    assert {"runs.csv", "classwise_counts.csv", "classwise.csv", "fairness.csv",
            "individual.csv", "disagreement.csv", "summary.csv"} <= names
    assert all(p.exists() for p in r.csv_paths)
    pngs = {p.name for p in (store / "report").glob("*.png")}
    assert {"accuracy_vs_T.png", "classwise_counts_vs_T.png",
            "classwise_heatmap_raw_nds_vs_ds.png", "classwise_heatmap_raw_teacher_vs_ds.png",
            "classwise_heatmap_relative_nds_vs_ds.png", "fairness_colour_vs_T.png",
            "individual_vs_T.png", "disagreement_by_class.png",
            "disagreement_matrix.png"} <= pngs
    for png in pngs:  # vector twins of every figure
        assert (store / "report" / png).with_suffix(".svg").exists()
        assert (store / "report" / png).with_suffix(".pdf").exists()
    assert list(r.summary["model"]) == ["teacher", "NDS", "DS T=2", "DS T=3", "DS T=4"]
    assert {"#SC", "#TC", "accuracy (%)", "EOD colour (%)", "I(f)"} <= set(r.summary.columns)
    text = " ".join(r.findings)
    assert "Raw accuracy vs the non-distilled student" in text
    assert "improved" in text and "worsened" in text


def test_one_seed_per_role_reports_accuracy_and_says_why_no_tests(tmp_path):
    root = write_store(tmp_path / "s", seeds=(0,), attributes={"sex": ["f", "m"]})
    r = write_report(root, FAST)
    t = analyze(root)
    assert (t["classwise_counts"]["test"] == "none").all()
    assert t["classwise"].empty
    assert len(t["accuracy"]) == 4 and len(t["fairness"]) == 4
    md = r.md_path.read_text()
    assert "No tests for #SC" in md and "at least 2" in md
    assert any("No tests" in f for f in r.findings)
    assert (r.summary["#SC"].isin(["not tested", ""])).all()


def test_missing_attributes_and_features_are_skipped_with_a_note(tmp_path):
    root = write_store(tmp_path / "s", attributes=None, features=False, temperatures=(2.0,))
    r = write_report(root, FAST)
    t = analyze(root)
    assert "fairness" not in t and "individual" not in t
    notes = " ".join(t["notes"]["note"])
    assert "no sensitive attributes" in notes and "test_features.npy is missing" in notes
    assert "Skipped: the data set has no sensitive attributes" in r.md_path.read_text()


def test_corrupt_incomplete_and_failed_runs_are_named_and_skipped(tmp_path):
    root = write_store(tmp_path / "s", temperatures=(2.0,), seeds=(0, 1, 2))
    runs = sorted((root / "runs").iterdir())
    (runs[0] / "predictions.npz").unlink()
    (runs[1] / "spec.json").write_text("{not json")
    data = (runs[2] / "predictions.npz").read_bytes()
    (runs[2] / "predictions.npz").write_bytes(data[: len(data) // 2])
    (runs[3] / "metrics.json").unlink()
    (root / ".tmp" / "ds-T2-s9-0000").mkdir(parents=True)  # in progress: ignored
    (root / "failed").mkdir()
    (root / "failed" / "ds-T2-s7-deadbeef.json").write_text(json.dumps(
        {"run_id": "ds-T2-s7-deadbeef", "spec": {"role": "ds", "temperature": 2.0, "seed": 7},
         "error": "loss became NaN", "time": "2025-01-01T00:00:00"}))
    r = write_report(root, FAST)
    t = analyze(root)
    skipped = dict(zip(t["skipped"]["run"], t["skipped"]["reason"], strict=True))
    assert skipped[runs[0].name] == "no predictions.npz"
    assert "spec.json does not parse" in skipped[runs[1].name]
    assert "not a readable .npz" in skipped[runs[2].name]
    assert skipped[runs[3].name] == "no metrics.json"
    assert len(t["runs"]) == 9 - 4
    assert t["failed"]["error"].tolist() == ["loss became NaN"]
    md = r.md_path.read_text()
    assert runs[2].name in md and "loss became NaN" in md
    assert any("skipped as incomplete or corrupt" in f for f in r.findings)


def test_non_finite_logits_skip_the_run(tmp_path):
    root = write_store(tmp_path / "s", temperatures=(2.0,), seeds=(0, 1))
    victim = sorted((root / "runs").iterdir())[-1]
    with np.load(victim / "predictions.npz") as z:
        arrays = dict(z)
    arrays["logits"][3, 1] = np.nan
    np.savez(victim / "predictions.npz", **arrays)
    t = analyze(root)
    assert "NaN" in t["skipped"].set_index("run").loc[victim.name, "reason"]


def test_given_teacher_is_compared_by_one_sample_tests(tmp_path):
    root = write_store(tmp_path / "s", given_teacher=True, temperatures=(2.0,),
                       num_classes=C, accuracy=planted)
    t = analyze(root)
    counts = t["classwise_counts"]
    assert set(counts.loc[counts["comparison"] == "teacher_vs_ds", "test"]) == {"one-sample"}
    runs = stored_predictions(root)
    teacher = [(p, y) for s, p, y in runs.values() if s["role"] == "teacher"]
    assert len(teacher) == 1
    mu = _class_acc(*teacher[0])
    ds = np.array([_class_acc(p, y) for s, p, y in runs.values() if s["role"] == "ds"])
    res = stats.ttest_1samp(ds, mu, axis=0)
    d = t["classwise"]
    rows = d[(d["comparison"] == "teacher_vs_ds") & (d["quantity"] == "raw")].sort_values("class")
    np.testing.assert_allclose(rows["p"], res.pvalue, rtol=1e-9)
    r = write_report(root, FAST)
    assert "ttest_1samp" in r.md_path.read_text()
    assert any("single given (pretrained) model" in f for f in r.findings)


def test_options_come_from_experiment_json_unless_given(tmp_path):
    root = write_store(tmp_path / "s", temperatures=(2.0,), n_per_class=30,
                       analysis={"significance": 0.01, "test_on": "raw", "individual_k": 3,
                                 "similarity": "pixels"})
    t = analyze(root)
    assert (t["classwise_counts"]["significance"] == 0.01).all()
    assert list((root / "analysis_cache").glob("knn-pixels*-k3.npz"))
    t2 = analyze(root, AnalysisConfig(significance=0.2, tests=False))
    assert (t2["classwise_counts"]["test"] == "none").all()
    assert "switched off" in t2["classwise_counts"]["reason"].iloc[0]


def test_shuffled_prediction_order_is_realigned(tmp_path):
    root = write_store(tmp_path / "s", temperatures=(2.0,), seeds=(0, 1),
                       accuracy=lambda *a: 1.0, shuffle_index=True,
                       attributes={"a": ["x", "y"]})
    t = analyze(root)
    assert (t["runs"]["accuracy"] == 100).all()
    assert (t["disagreement"]["share_mean"] == 0).all()
    assert t["disagreement_matrix"].empty
    assert (t["fairness"]["eod_mean"] == 0).all()


def test_bootstrap_adds_confidence_intervals(tmp_path):
    root = write_store(tmp_path / "s", temperatures=(2.0,), seeds=(0, 1), n_per_class=30,
                       attributes={"a": ["x", "y"]}, features=False)
    f = analyze(root, AnalysisConfig(bootstrap=30))["fairness"]
    for m in ("dpd", "eod"):
        for kind in ("ci", "testset_ci"):  # over seeds, and over the test set
            assert (f[f"{m}_{kind}_low"] <= f[f"{m}_{kind}_high"]).all()
            assert (f[f"{m}_{kind}_low"] <= f[f"{m}_mean"] + 1e-9).all()


def test_unusable_directories_raise_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="nope does not exist; a study's results directory is"):
        analyze(tmp_path / "nope")
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(StoreError, match="no finished runs"):
        analyze(tmp_path / "empty")


def test_runs_table_keeps_reported_accuracy(tables):
    runs = tables["runs"]
    assert np.allclose(runs["accuracy"], runs["reported_test_acc"])
    assert runs.loc[runs["role"] == "teacher", "T"].map(math.isnan).all()


def test_binary_task_uses_fairlearn_and_reports_selection_rates(tmp_path):
    root = write_store(tmp_path / "s", num_classes=2, temperatures=(2.0,), seeds=(0, 1, 2),
                       attributes={"sex": ["f", "m"]}, features=False)
    t = analyze(root)
    with np.load(root / "attributes.npz") as z:
        sex = z["sex"]
    keep = sex >= 0
    fr = t["fairness_runs"].set_index("run_id")
    for run_id, (_, pred, labels) in stored_predictions(root).items():
        assert fr.loc[run_id, "eod"] == pytest.approx(100 * equalized_odds_difference(
            labels[keep], pred[keep], sensitive_features=sex[keep]))
    groups = t["fairness_groups"]
    assert {"selection_rate_mean", "accuracy_mean"} <= set(groups.columns)
    assert set(groups["group"]) == {"f", "m"}
    assert "fairness_selection" not in t  # per-class selection rates are for multi-class tasks


def test_multiclass_selection_rates_per_group_and_class(tables):
    sel = tables["fairness_selection"]
    one = sel[(sel["role"] == "nds") & (sel["group"] == "red")]
    assert len(one) == C and one["selection_rate_mean"].sum() == pytest.approx(100)


def test_store_without_distilled_students_or_data_json(tmp_path):
    root = write_store(tmp_path / "s", roles=("teacher", "nds"), features=False)
    (root / "data.json").unlink()
    r = write_report(root, FAST)
    t = analyze(root)
    assert t["classwise_counts"].empty and t["disagreement"].empty
    assert "no distilled-student (DS) runs" in r.findings[0]
    assert any("no data.json" in n for n in t["notes"]["note"])
