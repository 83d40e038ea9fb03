"""The plain verdicts, the per-T comparisons behind them, and trends grouped by cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdfair.analysis.records import Finding
from kdfair.analysis.report import analyze, write_report
from kdfair.analysis.text import finding_groups
from kdfair.analysis.trends import partial_spearman
from kdfair.config import AnalysisConfig
from tests.analysis_fixtures import write_store

FAST = AnalysisConfig(vector_figures=False, seed_resamples=200, permutations=999)


def _store(tmp_path, ds_accuracy, seeds=(0, 1, 2, 3, 4)):
    def acc(role, t, seed, c):
        base = {"teacher": 0.95, "nds": 0.70}.get(role, ds_accuracy)
        return base + 0.01 * ((seed * 7 + c) % 3)  # a small seed spread

    return write_store(tmp_path / "s", num_classes=4, n_per_class=150, seeds=seeds,
                       temperatures=(1.0, 4.0), features=False,
                       attributes={"colour": ["a", "b"]}, accuracy=acc)


def test_comparisons_are_welch_tests_of_the_seed_accuracies_with_bh_over_t(tmp_path):
    tables = analyze(_store(tmp_path, 0.85), FAST)
    comp, runs = tables["comparisons"], tables["runs"]
    acc = comp[(comp["comparison"] == "nds_vs_ds") & (comp["measure"] == "accuracy")]
    nds = runs.loc[runs["role"] == "nds", "accuracy"].to_numpy()
    ps = []
    for _, r in acc.iterrows():
        ds = runs.loc[(runs["role"] == "ds") & (runs["T"] == r["T"]), "accuracy"].to_numpy()
        assert r["diff"] == pytest.approx(ds.mean() - nds.mean())
        p = stats.ttest_ind(ds, nds, equal_var=False).pvalue
        assert r["p"] == pytest.approx(p) and r["test"] == "welch"
        ps.append(p)
    np.testing.assert_allclose(acc["p_bh"], stats.false_discovery_control(ps))
    fair = comp[comp["measure"] == "eod"]
    assert set(fair["attribute"]) == {"colour"} and len(fair) == 4  # 2 comparisons × 2 T


def test_a_student_better_than_the_nds_gets_that_verdict(tmp_path):
    r = write_report(_store(tmp_path, 0.85), FAST)
    nds = next(f for f in r.records if f.code == "verdict"
               and f.subjects["comparison"] == "nds_vs_ds")
    assert nds.text.startswith("Verdict, DS vs NDS: every DS's mean accuracy is above the "
                               "NDS's (significantly at T = 1, 4)")
    assert nds.numbers["accuracy:better"] == 2 and nds.numbers["accuracy:significant"] == 2
    teacher = next(f for f in r.records if f.code == "verdict"
                   and f.subjects["comparison"] == "teacher_vs_ds")
    assert "every DS's mean accuracy is below the teacher's (significantly at T = 1, 4)" \
        in teacher.text
    assert r.key_results[:2] == [nds.subjects["headline"], teacher.subjects["headline"]]
    assert nds.text.startswith("Verdict, " + nds.subjects["headline"][:-1])
    html = r.html_path.read_text()
    assert "<details><summary>Verdict, DS vs NDS" in html  # its evidence one click away


def test_a_student_no_different_from_the_nds_is_said_so(tmp_path):
    r = write_report(_store(tmp_path, 0.70, seeds=(0, 1, 2)), FAST)
    nds = next(f for f in r.records if f.code == "verdict"
               and f.subjects["comparison"] == "nds_vs_ds")
    assert "significantly at no temperature" in nds.text


def test_partial_spearman_equals_the_textbook_formula():
    rng = np.random.default_rng(0)
    t = np.repeat([1.0, 2.0, 4.0, 8.0, 20.0], 4)
    acc = 90 - t + rng.normal(0, 2, len(t))
    v = -0.5 * acc + rng.normal(0, 1, len(t))  # follows accuracy, not T
    rho, p = partial_spearman(t, v, acc)
    r_vt = stats.spearmanr(v, t).statistic
    r_va, r_ta = stats.spearmanr(v, acc).statistic, stats.spearmanr(t, acc).statistic
    expected = (r_vt - r_va * r_ta) / np.sqrt((1 - r_va**2) * (1 - r_ta**2))
    assert rho == pytest.approx(expected)
    n = len(t)
    tstat = expected * np.sqrt((n - 3) / (1 - expected**2))
    assert p == pytest.approx(2 * stats.t.sf(abs(tstat), n - 3))
    assert np.isnan(partial_spearman(t[:4], v[:4], acc[:4])[0])  # too few points


def test_findings_are_grouped_under_their_verdict_and_cause():
    found = [Finding("verdict", "V nds", subjects={"comparison": "nds_vs_ds"}),
             Finding("verdict", "V teacher", subjects={"comparison": "teacher_vs_ds"}),
             Finding("accuracy", "acc"),
             Finding("raw_cells", "raw nds", subjects={"comparison": "nds_vs_ds"}),
             Finding("raw_cells", "raw teacher", subjects={"comparison": "teacher_vs_ds"}),
             Finding("trend", "t1"), Finding("follows_accuracy", "f", numbers={"trends": 3}),
             Finding("measure", "m1"), Finding("paper", "paper")]
    groups = finding_groups(found)
    assert groups == [("V nds", ["acc", "raw nds"]), ("V teacher", ["raw teacher"]),
                      ("Trends in T: 1 trend on its own, 3 more that only follow accuracy "
                       "(Spearman with a permutation p; the evidence below).", ["t1", "f"]),
                      ("Fairness measure by measure: teacher, NDS and the fairest DS, with "
                       "seed CIs.", ["m1"]),
                      ("paper", [])]


def test_neighbour_share_by_hand():
    from kdfair.analysis.individual import neighbour_share

    neighbours = np.array([[1, 2], [0, 2], [0, 1], [0, 1]])
    values = np.array([0, 0, 1, -1])  # input 3 has no group
    # pairs with both valid: (0,1) same, (0,2) diff, (1,0) same, (1,2) diff, (2,0), (2,1) diff
    assert neighbour_share(values, neighbours) == pytest.approx(2 / 6)


def test_a_similarity_space_grouped_by_the_attribute_is_not_read_as_fairness(tmp_path):
    """Features that cluster by colour, not by class: the report says consistency and I(f)
    are not read as fairer, and ranks no model by I(f)."""
    root = write_store(tmp_path / "s", num_classes=3, n_per_class=80, seeds=(0, 1, 2),
                       temperatures=(1.0, 4.0), attributes={"colour": ["a", "b", "c"]})
    with np.load(root / "attributes.npz") as z:
        colour = z["colour"]
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (4, 12))
    np.save(root / "test_features.npy",
            (centres[colour + 1] + rng.normal(0, 0.3, (len(colour), 12))).astype(np.float32))
    tables = analyze(root, FAST)
    n = tables["neighbours"].set_index("by")
    assert n.loc["colour", "share"] > 0.9 > n.loc["label", "share"]
    assert bool(n.loc["colour", "groups_more_than_label"])
    r = write_report(root, FAST)
    md = r.md_path.read_text()
    assert "neither higher consistency nor lower I(f) is read as fairer here" in md
    ind = next(f for f in r.records if f.code == "measure"
               and f.subjects["measure"] == "individual")
    assert "its neighbours share a sensitive attribute more than a label" in ind.text
    assert "lower is fairer" not in ind.text


def test_main_findings_is_a_handful_of_bullets_with_the_evidence_nested(tmp_path):
    r = write_report(_store(tmp_path, 0.85), FAST)
    section = r.md_path.read_text().split("## Main findings")[1].split("\n## ")[0]
    top = [line for line in section.splitlines() if line.startswith("- ")]
    nested = [line for line in section.splitlines() if line.startswith("  - ")]
    assert 2 <= len(top) <= 12 and top[0].startswith("- Verdict, DS vs NDS")
    assert len(nested) >= len(r.records) - len(top)  # nothing dropped: all under a headline


def test_measures_that_only_follow_accuracy_are_one_finding(tmp_path):
    """Accuracy falls with T; disagreement with the teacher and the NDS rises with it, and
    controlling for each run's accuracy no trend in T remains: one finding, not two."""
    def acc(role, t, seed, c):
        if role in ("teacher", "nds"):
            return 0.95 if role == "teacher" else 0.85
        return {1.0: 0.85, 2.0: 0.75, 4.0: 0.6, 8.0: 0.45}[t] + 0.03 * (seed - 2)

    root = write_store(tmp_path / "s", num_classes=4, n_per_class=60, seeds=(0, 1, 2, 3, 4),
                       temperatures=(1.0, 2.0, 4.0, 8.0), attributes={"colour": ["a", "b"]},
                       features=False, accuracy=acc)
    r = write_report(root, AnalysisConfig(vector_figures=False, permutations=999))
    stated = {f.subjects["quantity"] for f in r.records if f.code == "trend"}
    follow = next(f for f in r.records if f.code == "follows_accuracy")
    assert "accuracy" in stated
    assert {"disagreement:teacher_vs_ds", "disagreement:nds_vs_ds"} <= set(
        follow.subjects["quantities"].split(", "))
    assert not stated & set(follow.subjects["quantities"].split(", "))
    tr = analyze(root, AnalysisConfig(permutations=999))["trends"].set_index(["quantity", "range"])
    row = tr.loc[("disagreement:nds_vs_ds", "all T")]
    assert row["p"] < 0.05 <= row["partial_p"]


def test_a_fairness_gap_within_the_chance_floor_is_said_to_maybe_follow_accuracy():
    from kdfair.analysis.verdicts import verdict

    rows = [{"comparison": "nds_vs_ds", "quantity": q, "measure": m, "attribute": a, "T": t,
             "diff": d, "test": "welch", "p": 0.01, "p_bh": 0.02, "significant": True,
             "ds_better": better}
            for q, m, a, d, better in (("accuracy", "accuracy", None, -3.0, False),
                                       ("eod:colour", "eod", "colour", 5.0, False))
            for t in (1.0, 4.0)]
    cap = pd.DataFrame([{"measure": "eod", "attribute": "colour", "verdict": "noise"}])
    v = verdict(pd.DataFrame(rows), "nds_vs_ds", [], cap, 0.05)
    assert v.subjects["headline"] == (
        "DS vs NDS: every DS's mean accuracy is below the NDS's (significantly at T = 1, 4); "
        "less fair by EOD 'colour' at every temperature (significantly at one at least); "
        "EOD 'colour' is within the chance floor on the NDS, so these gaps may follow "
        "accuracy rather than fairness.")
    assert v.text.endswith("The NDS's own EOD 'colour' lies within what chance gives on this "
                           "test set (What this study can show).")
    clean = verdict(pd.DataFrame(rows), "nds_vs_ds", [], cap.assign(verdict="above chance"),
                    0.05)
    assert "chance" not in clean.text
