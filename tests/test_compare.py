"""kdfair.compare: each study's own numbers side by side, headed by the settings that differ."""

import json

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import stored_predictions, write_store
from fairlearn.metrics import demographic_parity_difference
from scipy import stats
from typer.testing import CliRunner

import kdfair
from kdfair.analysis.compare import differing_settings, short_names, study_labels
from kdfair.cli import app
from kdfair.errors import ConfigError, StoreError


def _study(root, name, alpha, seed, **settings):
    where = write_store(root / name, num_classes=2, n_per_class=40, seeds=(0, 1, 2),
                        temperatures=(2.0,), features=False, name=name, seed=seed,
                        attributes={"colour": ["red", "blue"]})
    exp = json.loads((where / "experiment.json").read_text())
    exp["distill"]["alpha"] = alpha
    exp.update(settings)
    (where / "experiment.json").write_text(json.dumps(exp))
    return where


def test_labels_name_the_settings_that_differ():
    a = {"name": "x-a", "distill": {"alpha": 0.5, "t2_scaling": True}, "seeds": [0, 1]}
    b = {"name": "x-b", "distill": {"alpha": 0.9, "t2_scaling": True}, "seeds": [0, 1]}
    assert differing_settings([a, b]) == ["distill.alpha"]
    assert study_labels([a, b], ["x-a", "x-b"]) == (["alpha=0.5", "alpha=0.9"],
                                                    ["distill.alpha"])
    c = {**b, "distill": {"alpha": 0.9, "t2_scaling": False}}
    assert study_labels([a, c], ["x-a", "x-c"])[0] == ["alpha=0.5, t2_scaling=true",
                                                       "alpha=0.9, t2_scaling=false"]
    assert short_names(["teacher.train.lr", "student.train.lr", "distill.alpha"]) == {
        "teacher.train.lr": "teacher.train.lr", "student.train.lr": "student.train.lr",
        "distill.alpha": "alpha"}
    # nothing differs but the name: headed by name; a setting one lacks reads 'unset'
    assert study_labels([a, {**a, "name": "y"}], ["x-a", "y"])[0] == ["x-a", "y"]
    d = {**a, "tracking": "tensorboard"}
    assert study_labels([a, d], ["x-a", "d"])[0] == ["tracking=unset", "tracking=tensorboard"]


def test_compare_puts_each_studys_numbers_side_by_side(tmp_path):
    a = _study(tmp_path / "r", "toy-alpha0.5", 0.5, seed=1)
    b = _study(tmp_path / "r", "toy-alpha0.8", 0.8, seed=2)
    res = kdfair.compare([a, b])
    assert res.md_path == tmp_path / "r" / "comparison" / "report.md"
    md = res.md_path.read_text()
    for heading in ("## accuracy (%)", "## DPD (%) — colour", "## EOD (%) — colour",
                    "## #SC: classes that changed vs the non-distilled student",
                    "## #TC: classes that changed vs the teacher"):
        assert heading in md
    assert "| model | alpha=0.5 | alpha=0.8 |" in md
    t = res.table
    for root, label in ((a, "alpha=0.5"), (b, "alpha=0.8")):
        codes = np.load(root / "attributes.npz")["colour"]  # in index order (fixture)
        ds = [(pred, y) for spec, pred, y in stored_predictions(root).values()
              if spec["role"] == "ds"]
        dpd = [100 * demographic_parity_difference(
            y[codes >= 0], p[codes >= 0], sensitive_features=codes[codes >= 0])
            for p, y in ds]
        row = t[(t["label"] == label) & (t["measure"] == "dpd") & (t["attribute"] == "colour")
                & (t["model"] == "DS T=2")].iloc[0]
        assert row["mean"] == pytest.approx(np.mean(dpd))
        low, high = stats.t.interval(0.95, len(dpd) - 1, loc=np.mean(dpd),
                                     scale=stats.sem(dpd))
        assert row["ci_low"] == pytest.approx(max(low, 0.0))
        assert row["ci_high"] == pytest.approx(high)
        acc = [100 * (p == y).mean() for p, y in ds]
        row = t[(t["label"] == label) & (t["measure"] == "accuracy")
                & (t["model"] == "DS T=2")].iloc[0]
        assert row["mean"] == pytest.approx(np.mean(acc))
        assert row["study"] == root.name
        cell = f"{np.mean(acc):.2f} % [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        assert f"| DS T=2 | {cell} |" in md or f"| {cell} |" in md
    csv = pd.read_csv(tmp_path / "r" / "comparison" / "comparison.csv")
    assert len(csv) == len(t) and set(csv["label"]) == {"alpha=0.5", "alpha=0.8"}
    assert "<th>alpha=0.8</th>" in res.html_path.read_text()


def test_compare_refuses_fewer_than_two_studies_and_paths_without_one(tmp_path):
    a = _study(tmp_path / "r", "toy", 0.5, seed=1)
    with pytest.raises(ConfigError, match="compare needs at least two studies, got 1"):
        kdfair.compare([a])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no experiment.json; it is empty"):
        kdfair.compare([a, tmp_path / "empty"])
    res = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and "nowhere does not exist" in " ".join(res.output.split())


def test_compare_cli_heads_columns_by_the_differing_settings(tmp_path):
    _study(tmp_path / "r", "toy-a", 0.5, seed=1, seeds=[0, 1, 2])
    _study(tmp_path / "r", "toy-b", 0.5, seed=2, seeds=[0, 1, 2, 3])
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "r"), "--out",
                                   str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "seeds=[0, 1, 2]: " in text and "seeds=[0, 1, 2, 3]: " in text
    assert f"comparison: {tmp_path / 'c' / 'report.md'}" in text
    assert "| model | seeds=[0, 1, 2] | seeds=[0, 1, 2, 3] |" in \
        (tmp_path / "c" / "report.md").read_text()


def test_the_same_study_name_twice_keeps_each_studys_own_numbers(tmp_path):
    a = _study(tmp_path / "r1", "toy", 0.5, seed=1)
    b = _study(tmp_path / "r2", "toy", 0.5, seed=2)  # same name and settings, other numbers
    res = kdfair.compare([a, b])
    assert list(res.studies["label"]) == ["toy #1", "toy #2"]
    assert list(res.studies["path"]) == [str(a), str(b)]
    t = res.table
    for root, label in ((a, "toy #1"), (b, "toy #2")):
        acc = [100 * (p == y).mean() for spec, p, y in stored_predictions(root).values()
               if spec["role"] == "ds"]
        row = t[(t["label"] == label) & (t["measure"] == "accuracy")
                & (t["model"] == "DS T=2")].iloc[0]
        assert row["mean"] == pytest.approx(np.mean(acc))
    with pytest.raises(ConfigError, match="compare needs at least two studies, got 1"):
        kdfair.compare([a, tmp_path / "r1" / ".." / "r1" / "toy"])  # one study given twice


def test_compare_csvs_neutralise_formulas_and_keep_negative_numbers(tmp_path):
    import csv

    a = _study(tmp_path / "r", "toy-a", -0.5, seed=1, note="=cmd|' /C calc'!A0")
    b = _study(tmp_path / "r", "toy-b", 0.5, seed=2, note="plain")
    res = kdfair.compare([a, b])
    with open(res.md_path.parent / "studies.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["distill.alpha"] for r in rows] == ["-0.5", "0.5"]  # a number stays a number
    assert [r["note"] for r in rows] == ["'=cmd|' /C calc'!A0", "plain"]
    assert rows[0]["label"] == "alpha=-0.5, note==cmd|' /C calc'!A0"  # not a formula: kept


def test_compare_set_changes_each_study_s_own_analysis_options(tmp_path):
    """`kdfair compare --set analysis.FIELD=VALUE` analyses every study as `kdfair report --set`
    would (its own options, that one changed) and says so; a bad value is one message."""
    from kdfair.analysis.report import analyze
    from kdfair.api import analysis_options

    a = _study(tmp_path / "r", "toy-a", 0.5, seed=1)
    b = _study(tmp_path / "r", "toy-b", 0.8, seed=2)
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "c"),
                                   "--set", "analysis.significance=0.5"])
    assert res.exit_code == 0, res.output
    counts = pd.read_csv(tmp_path / "c" / "counts.csv")
    for root in (a, b):
        own = analyze(root, analysis_options(root, {"significance": 0.5}))["summary"]
        own = own[own["role"] == "ds"].iloc[0]
        mine = counts[counts["study"] == root.name].set_index("count")["n_significant"]
        assert (mine["#SC"], mine["#TC"]) == (own["#SC"], own["#TC"])
    default = kdfair.compare([a, b], tmp_path / "d").counts
    assert counts["n_significant"].sum() > default["n_significant"].sum()  # 0.5 finds more
    md = (tmp_path / "c" / "report.md").read_text()
    assert ("Analysis options changed for every study here (as `kdfair report --set` would): "
            "significance=0.5") in md
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "e"),
                                   "--set", "analysis.pairing=sometimes"])
    assert res.exit_code == 1 and "pairing" in res.output and not (tmp_path / "e").exists()
    with pytest.raises(ConfigError, match="not both"):
        kdfair.compare([a, b], options={"pairing": "paired"}, changes={"significance": 0.5})
