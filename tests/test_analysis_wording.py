"""What the report says, on planted stores: each word claims no more than its test measured;
warnings, confidence beside I(f), paper vs this study, and a report that owns only its files."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import softmax

from kdfair.analysis import report as report_mod
from kdfair.analysis import sections
from kdfair.analysis.checks import run_warnings
from kdfair.analysis.paper import paper_numbers, paper_table
from kdfair.analysis.report import analyze, write_report
from kdfair.config import AnalysisConfig
from tests.analysis_fixtures import write_store

FAST = AnalysisConfig(vector_figures=False)  # PNG only: the SVG / PDF twins are tested elsewhere


def one_class_drops(role, t, seed, c):
    """DS at T = 2 loses class 0; every other class is as accurate as the NDS's."""
    if role == "teacher":
        return 0.95
    if role == "ds" and c == 0:
        return 0.3
    return 0.8


@pytest.fixture(scope="module")
def drop_store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("drop"), num_classes=5, n_per_class=400,
                       temperatures=(2.0,), accuracy=one_class_drops, features=False)


def _improved_phrases(text: str) -> list[str]:
    """Every stretch of text that follows 'improved' up to 'worsened' or the sentence end."""
    return [m.group(0) for m in re.finditer(r"improved(?:(?!worsened)[^.;])*", text)]


def test_one_class_drops_and_no_other_class_is_called_improved(drop_store):
    t = analyze(drop_store)
    d = t["classwise"]
    raw = d[(d["comparison"] == "nds_vs_ds") & (d["quantity"] == "raw")].set_index("class")
    rel = d[(d["comparison"] == "nds_vs_ds") & (d["quantity"] == "relative")].set_index("class")
    assert raw.loc[0, "significant"] and raw.loc[0, "diff"] < 0
    # the coupling: the relative test sees the other classes' share rise
    assert rel.loc[1:, "significant"].sum() >= 2 and (rel.loc[1:, "diff"] > 0).all()
    assert not (raw.loc[1:, "significant"] & (raw.loc[1:, "diff"] > 0)).any()  # precondition
    r = write_report(drop_store, FAST)
    text = " ".join(r.findings + r.key_results) + r.md_path.read_text()
    for phrase in _improved_phrases(text):
        assert not re.search(r"class[1-4] \(T", phrase), phrase
    assert "share of accuracy up" in text and "A shift in share is not an improvement" in text
    assert "worsened" in text and "class0 (T = 2)" in text


def test_findings_lead_with_what_both_tests_agree_on(drop_store):
    r = write_report(drop_store, FAST)
    first = next(f for f in r.findings  # warnings and verdicts come first
                 if not f.startswith(("Warning: ", "Verdict, ")))
    assert first.startswith("DS vs NDS (#SC): the raw and the relative test")
    assert "worsened with a smaller share of accuracy: class0 (T = 2)" in first


def test_constant_but_different_classes_are_named_and_permutation_tests_them(tmp_path):
    def acc(role, t, seed, c):  # class 0: teacher right every time, DS wrong every time
        if c == 0:
            return 1.0 if role == "teacher" else 0.0
        return 0.9 if role == "teacher" else 0.7

    root = write_store(tmp_path / "s", num_classes=4, temperatures=(2.0,), accuracy=acc,
                       features=False)
    r = write_report(root, FAST)
    md = r.md_path.read_text()
    assert "different in every seed (untestable by Welch" in md
    assert any("different in every seed" in f and "class0 vs teacher at T = 2" in f
               for f in r.findings)
    counts = analyze(root)["classwise_counts"].set_index(["comparison", "quantity"])
    assert counts.loc[("teacher_vs_ds", "raw"), "n_constant_different"] >= 1
    t = analyze(root, AnalysisConfig(test="permutation", vector_figures=False))
    d = t["classwise"]
    cell = d[(d["comparison"] == "teacher_vs_ds") & (d["quantity"] == "raw")
             & (d["class"] == 0)].iloc[0]
    assert cell["testable"] and cell["p"] == pytest.approx(2 / 252) and cell["significant"]
    assert set(t["classwise_counts"]["test"]) == {"permutation"}


def test_report_states_which_test_made_the_numbers(tmp_path):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), features=False)
    r = write_report(root, AnalysisConfig(pairing="paired", vector_figures=False))
    md = r.md_path.read_text()
    assert "paired t-test on seed-matched differences (scipy.stats.ttest_rel)" in md
    assert "analysis.pairing: paired" in md
    assert set(analyze(root, AnalysisConfig(pairing="paired"))["classwise_counts"]["test"]) \
        == {"paired t"}


def test_every_headline_table_has_seed_cis(tmp_path):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0, 4.0, 8.0),
                       attributes={"g": ["a", "b"]})
    t = analyze(root)
    runs = t["runs"]
    acc = t["accuracy"]
    for _, row in acc.iterrows():  # the t-interval of the seed mean, as scipy gives it
        vals = runs.loc[(runs["role"] == row["role"]) & (
            (runs["T"] == row["T"]) | (runs["T"].isna() & np.isnan(row["T"]))), "accuracy"]
        ref = stats.t.interval(0.95, len(vals) - 1, loc=vals.mean(), scale=stats.sem(vals))
        assert (row["acc_ci_low"], row["acc_ci_high"]) == pytest.approx(ref)
    for name, cols in (("fairness", ("dpd", "eod")), ("individual", ("individual",
                                                                       "consistency",
                                                                       "confidence")),
                       ("disagreement_summary", ("disagreement",))):
        for c in cols:
            assert t[name][f"{c}_ci_low"].notna().all(), (name, c)
    assert analyze(root)["accuracy"].equals(acc)  # fixed RNG seed: reproducible
    summary = t["summary"]
    assert pd.api.types.is_float_dtype(summary["acc_mean"])  # numbers, not display strings
    assert {"acc_ci_low", "dpd:g_mean", "eod:g_ci_high", "#SC", "#TC_lower"} <= set(summary)


def test_trends_are_stated_only_where_the_test_supports_them(tmp_path):
    def rising(role, t, seed, c):
        return 0.5 + 0.04 * t if role == "ds" else 0.6

    root = write_store(tmp_path / "s", num_classes=3, temperatures=(1.0, 2.0, 4.0, 8.0),
                       accuracy=rising, features=False)
    r = write_report(root, FAST)
    tr = analyze(root)["trends"].set_index(["quantity", "range"])
    assert tr.loc[("accuracy", "all T"), "significant"]
    assert tr.loc[("accuracy", "all T"), "direction"] == "rises"
    trend = [f for f in r.findings if "with T (" in f or "No monotone trend" in f]
    assert any(f.startswith("DS accuracy rises with T (Spearman ρ") for f in trend)
    for f in trend:  # every trend sentence cites its test
        assert "Spearman" in f and "p" in f
    assert not any("goes from" in f for f in r.findings)  # no endpoint-only claims
    all_tr = analyze(root)["trends"].dropna(subset=["p"])
    np.testing.assert_allclose(all_tr["p_bh"], stats.false_discovery_control(all_tr["p"]))
    assert any("expected at p < 0.05 by chance alone" in f for f in r.findings)


def test_warnings_for_degenerate_and_suspicious_runs():
    runs = pd.DataFrame({"run_id": ["t0", "n0", "d0"], "role": ["teacher", "nds", "ds"],
                         "T": [np.nan, np.nan, 2.0], "seed": [0, 0, 0]})
    preds = [np.zeros(20, int), np.arange(20) % 4, np.array([0, 1] * 10)]
    acc = pd.DataFrame({"role": ["teacher", "nds", "ds"], "T": [np.nan, np.nan, 2.0],
                        "acc_mean": [25.0, 60.0, 50.0], "acc_std": [0.0, 0.5, 2.0]})
    found = run_warnings(runs, preds, 4, acc)
    w = [f.text for f in found]
    assert any(x.startswith("teacher: 1 of 1 runs predict only one class") and "t0" in x
               for x in w)
    # the same as data, for what decides on it (method ranking)
    degenerate = [f for f in found if f.code == "degenerate"]
    assert [(f.subjects["role"], f.subjects["runs"], f.numbers["most_classes_used"])
            for f in degenerate] == [("teacher", "t0", 1)]
    assert {f.code for f in found} == {"degenerate", "weak_teacher", "seed_spread"}
    assert not any("n0" in x for x in w)  # 4 of 4 classes
    assert not any("d0" in x for x in w)  # 2 of 4 classes: half, not fewer than half
    three = [f.text for f in run_warnings(runs, [np.zeros(20, int)] * 2
                                          + [np.array([0, 1] * 10)], 5, acc)]
    assert any(x.startswith("DS T=2: 1 of 1 runs predict fewer than half the classes")
               and "d0 (seed 0: 2 of 5)" in x for x in three)
    assert any("less accurate than the non-distilled student" in x for x in w)
    assert any("DS T=2" in x and "3× the NDS's" in x for x in w)


def test_weak_teacher_is_warned_in_the_first_section(tmp_path):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), features=False,
                       accuracy=lambda role, t, s, c: 0.5 if role == "teacher" else 0.8)
    md = write_report(root, FAST).md_path.read_text()
    first, second = md.split("## ")[1:3]
    assert first.startswith("What this study can show") and "nothing to teach" in first
    assert second.startswith("Warnings") and "less accurate than the non-distilled" in second


def test_confidence_is_measured_beside_individual_fairness(tmp_path, monkeypatch):
    root = write_store(tmp_path / "s", num_classes=4, temperatures=(2.0, 4.0))
    t = analyze(root)
    for run_id, conf in zip(t["runs"]["run_id"], t["runs"]["confidence"], strict=True):
        with np.load(root / "runs" / run_id / "predictions.npz") as z:
            assert conf == pytest.approx(softmax(z["logits"].astype(float), 1).max(1).mean())
    corr = t["individual_vs_confidence"].iloc[0]
    assert corr["pearson_r"] == pytest.approx(np.corrcoef(t["runs"]["individual"],
                                                          t["runs"]["confidence"])[0, 1])
    monkeypatch.setattr(report_mod, "CONFIDENCE_LIMIT", -1.0)  # pretend I(f) tracks confidence
    r = write_report(root, FAST)
    ind = [f for f in r.findings if f.startswith("Individual unfairness")]
    assert ind and "teacher's" not in ind[0]  # no ranking against the teacher
    assert "lower is fairer" not in ind[0] and "lowest" not in ind[0]
    assert any("not ranked by it" in f for f in r.findings)
    no_graph = write_store(tmp_path / "n", num_classes=4, temperatures=(2.0,), features=False)
    assert analyze(no_graph)["runs"]["confidence"].between(0.25, 1).all()


def test_paper_numbers_ship_with_the_package_keyed_by_preset():
    numbers = paper_numbers()
    assert numbers["cifar100-r56-r20"]["Table 1"]["T=10"]["#SC"] == 22
    assert numbers["trifeature-r20-lenet5"]["Table 4"]["teacher"]["individual"] == 0.016
    assert {"imagenet-r50-r18", "celeba-smiling-r50-r18", "hatexplain"} <= set(numbers)


def test_paper_vs_this_study_side_by_side(tmp_path):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(1.0, 4.0),
                       attributes={"colour": ["r", "g"]}, name="trifeature-r20-lenet5")
    t = analyze(root)
    p = t["paper_vs_study"]
    acc = p[(p["quantity"] == "accuracy (%)") & (p["model"] == "NDS")].iloc[0]
    nds = t["accuracy"].set_index("role").loc["nds"]
    assert acc["paper"] == 90.33 and acc["this_study"] == pytest.approx(nds["acc_mean"])
    assert acc["difference"] == pytest.approx(nds["acc_mean"] - 90.33)
    assert acc["paper_in_ci"] == (nds["acc_ci_low"] <= 90.33 <= nds["acc_ci_high"])
    missing = p[p["model"] == "DS T=7"]  # the paper has T = 7, this study not
    assert len(missing) and missing["this_study"].isna().all()
    md = write_report(root, FAST).md_path.read_text()
    assert "## Paper vs this study" in md and "Table 2" in md and "Table 4" in md
    # the fixture is named like the preset but trains something else: the report says so
    changes = t["paper_protocol_changes"]
    assert len(changes) and "dataset.name" in set(changes["setting"])
    assert list(changes.columns) == ["setting", "trifeature-r20-lenet5", "this study"]
    assert (f"**This study differs from the preset `trifeature-r20-lenet5` in {len(changes)} "
            "settings** (below)") in md
    assert (f"from a study that differs from the preset `trifeature-r20-lenet5` in "
            f"{len(changes)} settings") in md
    assert paper_table("no-such-experiment", t) is None
    assert paper_table("trifeature-cpu", t).equals(p)  # an alias of the paper's study


def test_report_owns_only_its_files_and_failure_keeps_the_old_report(tmp_path, monkeypatch):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), features=False)
    out = root / "report"
    out.mkdir()
    (out / "my_figure.png").write_bytes(b"mine")
    (out / "my_table.csv").write_text("mine")
    write_report(root, FAST)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "report.md" in manifest["files"] and "my_figure.png" not in manifest["files"]
    (out / "stale.csv").write_text("from an older report")
    manifest["files"].append("stale.csv")
    (out / "manifest.json").write_text(json.dumps(manifest))
    write_report(root, FAST)
    assert not (out / "stale.csv").exists()  # the previous report's, no longer produced
    assert (out / "my_figure.png").read_bytes() == b"mine"
    assert (out / "my_table.csv").read_text() == "mine"
    before = (out / "report.md").read_text()

    def broken(*args, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(report_mod, "build_document", broken)
    with pytest.raises(RuntimeError):
        write_report(root, FAST)
    assert (out / "report.md").read_text() == before
    assert not list(root.glob(".report-*"))


def test_html_in_class_names_is_escaped(tmp_path):
    names = ["<script>alert(1)</script>", "b|c", "plain"]
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), class_names=names,
                       features=False, n_per_class=300, accuracy=one_class_drops)
    r = write_report(root, FAST)
    md, html = r.md_path.read_text(), r.html_path.read_text()
    assert "<script>" not in md and "&lt;script>" in md
    assert "<script>" not in html


def test_report_reads_as_one_table_per_comparison_with_a_toc(tmp_path):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0, 4.0),
                       attributes={"b": ["x", "y"], "a": ["u", "v"]})
    r = write_report(root, FAST)
    md = r.md_path.read_text()
    assert md.count("expected by chance alone") == 0
    assert md.startswith("# kdfair report")
    assert "Contents: [What this study can show](#what-this-study-can-show) · [Warnings]" in md
    assert "[summary.csv](summary.csv)" in md and "<a href='summary.csv'>" in \
        r.html_path.read_text()
    assert md.index("## Key results") < md.index("## Summary") < md.index("## Main findings")
    assert len(r.key_results) <= 5
    cols = list(r.summary.columns)  # every attribute, in data.json's order (b before a)
    assert cols.index("DPD b (%)") < cols.index("DPD a (%)")
    assert "| setting | value |" in md and "model_dump" not in md
    html = r.html_path.read_text()
    assert "<th>group</th>" not in html and "<th></th>" not in html
    assert sections.display(pd.DataFrame({"T": [np.nan, 2.0]}))["T"].tolist() == ["", "2"]


def test_old_experiment_json_with_analysis_alpha_is_read_as_the_test_level(tmp_path):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), features=False,
                       analysis={"alpha": 0.01})
    t = analyze(root)
    assert (t["classwise_counts"]["significance"] == 0.01).all()
    assert not any("invalid" in n for n in t["notes"]["note"])


def test_heat_maps_show_the_tables_numbers(drop_store):
    a = report_mod._analyze(drop_store, FAST)
    d = a.tables["classwise"]
    for q in ("raw", "relative"):
        for comparison in ("nds_vs_ds", "teacher_vs_ds"):
            diff, sig, const, names, temps, _ = sections.heatmap_data(a, comparison, q)
            rows = d[(d["comparison"] == comparison) & (d["quantity"] == q)
                     & (d["T"] == temps[0])].sort_values("class")
            np.testing.assert_allclose(diff[:, 0], rows["diff"])  # colour: the test's diff
            assert sig[:, 0].tolist() == rows["significant"].tolist()  # dots: its verdicts
            assert names == list(rows["class_name"])


def test_api_takes_analysis_options_and_names_a_bad_one(tmp_path):
    import kdfair
    from kdfair.errors import ConfigError

    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), features=False)
    t = kdfair.analyze(root, {"test": "permutation"})
    assert set(t["classwise_counts"]["test"]) == {"permutation"}
    with pytest.raises(ConfigError, match=r"options\.pairing: must be one of unpaired, paired"):
        kdfair.analyze(root, {"pairing": "pairs"})


def test_a_study_that_does_not_show_the_papers_phenomena_says_so_first():
    import pandas as pd

    from kdfair.analysis.checks import phenomenon_warnings

    nan = float("nan")
    acc = pd.DataFrame({"role": ["teacher", "nds", "ds", "ds", "ds"], "T": [nan, nan, 1, 4, 20],
                        "acc_mean": [99.0, 98.0, 97.5, 96.8, 99.0],
                        "acc_ci_low": [98.5, 97.6, 97.0, 96.0, 98.8],
                        "acc_ci_high": [99.5, 98.4, 98.0, 97.5, 99.2]})
    fair = pd.DataFrame({"role": ["nds", "ds", "ds", "ds"], "T": [nan, 1, 4, 20],
                         "attribute": "colour", "eod_mean": [10.0, 12.0, 15.0, 1.0],
                         "dpd_mean": [3.0, 2.0, 4.0, 1.0]})
    found = phenomenon_warnings(acc, fair)
    assert [f.code for f in found] == ["no_accuracy_gain", "no_fairness_gain"]
    assert found[1].subjects == {"attributes": "colour"}
    out = [f.text for f in found]
    # T = 20 is beyond the paper's moderate range: it does not count
    assert "no DS at T ≤ 10 reaches the NDS's mean accuracy (best DS T=1 97.50 % vs NDS " \
        "98.00 %; the seed CIs overlap)" in out[0]
    below = phenomenon_warnings(acc.assign(acc_ci_high=[99.5, 98.4, 97.5, 97.5, 99.2]), fair)
    assert "its seed CI lies below the NDS's" in below[0].text
    assert out[1].endswith("every DS at T ≤ 10 has a mean at least the NDS's in EOD for "
                           "'colour'.")
    shown = acc.assign(acc_mean=[99.0, 98.0, 98.0, 96.8, 90.0])  # a tie counts as reaching it
    assert phenomenon_warnings(shown, fair.assign(eod_mean=[10.0, 9.0, 15.0, 1.0])) == []
    assert phenomenon_warnings(acc[acc["role"] != "nds"], fair) == []


def test_a_study_at_the_ceiling_says_so_first_and_lists_no_sub_point_trend(tmp_path):
    """Every model at 99–100 %: the first section says the study is at the ceiling, and a
    significant but tiny accuracy trend in T is not read as a finding."""
    def ceiling(role, t, seed, c):
        if role == "teacher":
            return 1.0
        return 0.990 + 0.001 * (t or 0)  # DS: 99.1 % at T = 1 → 99.8 % at T = 8

    root = write_store(tmp_path / "s", num_classes=4, n_per_class=2000,
                       temperatures=(1.0, 2.0, 4.0, 8.0), accuracy=ceiling, features=False)
    r = write_report(root, FAST)
    md = r.md_path.read_text()
    first = md.split("## ")[1]
    assert first.startswith("What this study can show") and "At the ceiling" in first
    tr = analyze(root)["trends"].set_index(["quantity", "range"])
    acc = tr.loc[("accuracy", "all T")]
    assert acc["significant"] and acc["span"] < 1.0  # real, tiny, and only a fraction of a point
    assert not any(f.startswith("DS accuracy rises with T") for f in r.findings)
    assert any("not read as findings" in f and "at the ceiling" in f for f in r.findings)


def test_a_test_that_cannot_succeed_is_not_suggested(tmp_path):
    """3 + 3 seeds: an exact permutation test's smallest two-sided p is 2 / C(6, 3) = 0.1, so
    the report says no test can decide instead of suggesting one; 5 + 5 seeds: 2 / 252."""
    def acc(role, t, seed, c):
        if c == 0:
            return 1.0 if role == "teacher" else 0.0
        return 0.9 if role == "teacher" else 0.7

    few = write_store(tmp_path / "few", num_classes=4, temperatures=(2.0,), accuracy=acc,
                      features=False, seeds=(0, 1, 2))
    text = " ".join(write_report(few, FAST).findings)
    assert "smallest two-sided p is 0.1, not below 0.05" in text
    assert "set analysis.test: permutation" not in text
    many = write_store(tmp_path / "many", num_classes=4, temperatures=(2.0,), accuracy=acc,
                       features=False)
    assert "set analysis.test: permutation to test them" in " ".join(
        write_report(many, FAST).findings)


def test_seed_cis_do_not_depend_on_how_the_group_key_is_typed():
    import pandas as pd

    from kdfair.analysis.common import by_group, ci_text, key_label

    assert key_label(("ds", np.float64(2.0))) == key_label(("ds", 2.0)) == "('ds', 2.0)"
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"role": ["ds"] * 4, "T": [2.0] * 4, "v": rng.normal(size=4)})
    typed = df.assign(T=pd.Series([np.float64(2.0)] * 4, dtype=object))
    a, b = by_group(df, ["v"], resamples=500), by_group(typed, ["v"], resamples=500)
    assert (a["v_ci_low"].iloc[0], a["v_ci_high"].iloc[0]) == (b["v_ci_low"].iloc[0],
                                                               b["v_ci_high"].iloc[0])
    assert ci_text(100.0, 100.0, 100.0) == "100.00 [all seeds equal]"
    assert ci_text(99.5, 99.0, 100.0) == "99.50 [99.00, 100.00]"


def test_counts_pooled_over_t_are_corrected_over_the_same_family(tmp_path):
    """The raw-accuracy sentence pools every (class, T) cell, so its Benjamini–Hochberg count
    is over all of them (scipy's false_discovery_control), with the number chance gives."""
    def acc(role, t, seed, c):
        if role == "ds" and c == 0:
            return 0.4 if t == 4.0 else 0.75
        return 0.95 if role == "teacher" else 0.8

    root = write_store(tmp_path / "s", num_classes=5, n_per_class=300,
                       temperatures=(2.0, 4.0, 8.0), accuracy=acc, features=False)
    r = write_report(root, FAST)
    d = analyze(root)["classwise"]
    raw = d[(d["comparison"] == "nds_vs_ds") & (d["quantity"] == "raw")]
    p = raw["p"].dropna().to_numpy()
    kept = int((stats.false_discovery_control(p) < 0.05).sum())
    want = (f"after Benjamini–Hochberg over all {len(p)} distinct tested (class, T) cells {kept} "
            f"{'remains' if kept == 1 else 'remain'}; about {0.05 * len(p):.1f}")
    assert any(want in f for f in r.findings) and any(want in k for k in r.key_results)


def test_findings_and_warnings_are_records_written_as_csv(tmp_path):
    """Every Main-findings bullet is a record with a code; findings.csv and warnings.csv hold
    them as data (subjects and numbers as JSON) beside the sentence the report shows."""
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(1.0, 4.0), features=False,
                       attributes={"colour": ["a", "b"]},
                       accuracy=lambda role, t, s, c: 0.5 if role == "teacher" else 0.8)
    r = write_report(root, FAST)
    out = r.md_path.parent
    found = pd.read_csv(out / "findings.csv")
    assert list(found["finding"]) == [f.text for f in r.records]
    assert {"accuracy", "agreement", "raw_cells", "measure"} <= set(found["code"])
    subjects = [json.loads(s) for s in found.loc[found["code"] == "measure", "subjects"]]
    assert {"measure": "eod", "attribute": "colour"} in subjects
    md = r.md_path.read_text().split("## Main findings")[1].split("\n## ")[0]
    assert all(f"- {f.text}" in md for f in r.records)
    warned = pd.read_csv(out / "warnings.csv")
    weak = warned[warned["code"] == "weak_teacher"]
    assert len(weak) == 1 and json.loads(weak["numbers"].iloc[0])["teacher_accuracy"] < 60
    assert r.findings[0] == f"Warning: {warned['warning'].iloc[0]}"


def test_repeats_of_one_test_at_the_ceiling_are_counted_once(tmp_path):
    """Classes at 100 % in every run have β_c/β = 1/β: the relative test gives them all the
    same p. The family counts that test once and says how many cells repeat it."""
    def acc(role, t, seed, c):
        if c == 0:
            return {"teacher": 0.95, "nds": 0.8}.get(role, 0.6)
        return 1.0

    root = write_store(tmp_path / "s", num_classes=5, n_per_class=200,
                       temperatures=(2.0, 4.0), accuracy=acc, features=False)
    d = analyze(root, FAST)["classwise"]
    rel = d[(d["comparison"] == "nds_vs_ds") & (d["quantity"] == "relative")]
    assert rel["p"].notna().sum() == 10  # 5 classes × 2 T
    distinct = rel.drop_duplicates(["T", "p"])["p"].to_numpy()
    assert len(distinct) == 4  # per T: class 0, and one test for the four classes at 100 %
    kept = int((stats.false_discovery_control(distinct) < 0.05).sum())
    r = write_report(root, FAST)
    want = (f"after Benjamini–Hochberg over all 4 distinct tested (class, T) cells (6 more "
            f"cells repeat another class's test exactly and count once) {kept} ")
    assert any(want in f and f.startswith("#SC") for f in r.findings)


def test_the_report_names_its_interval_and_its_n(tmp_path):
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), features=False,
                       seeds=(0, 1, 2))
    md = write_report(root, FAST).md_path.read_text()
    assert ("95 % t-interval of the seed mean, 3 seeds per model; with fewer than 5 seeds its "
            "coverage rests on normally spread seeds") in md
    boot = write_report(root, AnalysisConfig(vector_figures=False, seed_ci="bootstrap"))
    assert "95 % percentile bootstrap over seeds, 3 seeds per model" in boot.md_path.read_text()


def test_a_study_named_like_a_preset_lists_what_it_changes_from_it():
    """The paper's numbers are keyed by preset name: a study that keeps the name but changes
    the protocol is compared with them only beside the list of changes; where and how it runs
    (device, engine, store) is not a change, nor a field an older experiment.json lacks."""
    from kdfair.analysis.paper import protocol_changes
    from kdfair.analysis.text import protocol_sentence
    from kdfair.config import load_experiment

    def dump(preset: str, *overrides: str) -> dict:
        return load_experiment(preset, overrides=list(overrides)).model_dump(mode="json")

    assert protocol_changes(dump("trifeature-r20-lenet5")).empty
    assert protocol_changes(dump(
        "trifeature-r20-lenet5", "device=cpu", "engine.precision=fp32", "engine.workers=1",
        "store.keep_weights=teachers", "dataset.root=/data", "dataset.download=true",
        "analysis.vector_figures=false")).empty
    changed = protocol_changes(dump("trifeature-r20-lenet5", "student.train.epochs=5",
                                    "seeds=[0, 1]"))
    assert sorted(map(tuple, changed.to_numpy().tolist())) == [
        ("seeds", "[0, 1, 2, 3, 4]", "[0, 1]"), ("student.train.epochs", "60", "5")]
    older = dump("trifeature-r20-lenet5")
    del older["distill"]["methods"]  # written before methods existed: the default, kd
    assert protocol_changes(older).empty
    assert protocol_changes({**dump("trifeature-r20-lenet5"), "name": "my-study"}) is None
    # an alias of the paper's study is compared with the paper's preset, not with itself: the
    # reduced trifeature-cpu is never "the preset as shipped" beside the paper's numbers
    cpu = protocol_changes(dump("trifeature-cpu"))
    assert cpu.columns[1] == "trifeature-r20-lenet5"
    assert {"teacher.model.arch", "dataset.size"} <= set(cpu["setting"])
    assert protocol_sentence("trifeature-cpu", cpu).startswith(
        f"**This study (`trifeature-cpu`) differs from the preset `trifeature-r20-lenet5` in "
        f"{len(cpu)} settings**")
    assert protocol_sentence("trifeature-r20-lenet5", changed.iloc[:0]) == (
        "This study runs the preset `trifeature-r20-lenet5` as kdfair ships it (where and how "
        "it runs aside).")
