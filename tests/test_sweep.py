"""Sweeps (`kdfair run EXP --sweep PATH=V1,V2`) and `kdfair compare`: one study per value, then
the studies side by side with the settings that differ in the column heads."""

import json

import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from kdfair.cli import app
from kdfair.config import load_experiment
from kdfair.errors import ConfigError
from kdfair.sweep import parse_sweep, points, study_name, sweep_experiments
from tests.toy import TINY_YAML

TINY = TINY_YAML + "analysis: {individual_k: 3, similarity_dim: 8}\n"

pytestmark = pytest.mark.usefixtures("one_thread")


def _text(res) -> str:
    return " ".join(res.output.split())


def test_parse_sweep_reads_each_value_as_yaml():
    s = parse_sweep("distill.alpha=0.5, 0.8,0.9")
    assert s.keys == ("distill", "alpha") and s.values == (0.5, 0.8, 0.9)
    assert parse_sweep("distill.temperatures=[1,2],[4,8]").values == ([1, 2], [4, 8])
    assert parse_sweep("distill.t2_scaling=true,false").values == (True, False)
    with pytest.raises(ConfigError, match=r"--sweep 'distill.alpha': expected "
                                          r"DOTTED.PATH=VALUE,VALUE,…"):
        parse_sweep("distill.alpha")
    with pytest.raises(ConfigError, match="a value is given twice"):
        parse_sweep("distill.alpha=0.5,0.5")
    with pytest.raises(ConfigError, match="the sweep names its studies itself"):
        parse_sweep("name=a,b")


def test_an_alias_bomb_in_a_sweep_is_refused_at_once():
    import time

    pairs = zip("abcdefgh", "bcdefghi", strict=True)  # 10^9 values from 400 bytes
    bomb = "[&a [x,x,x,x,x,x,x,x,x,x]" + "".join(
        f", &{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in pairs) + "]"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"--sweep teacher.model.foo: the list of values: its "
                                          r"aliases \(\*name\) expand to more than 100000"):
        parse_sweep(f"teacher.model.foo={bomb}")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ConfigError, match=r"--sweep distill.alpha: the list of values is not "
                                          r"valid YAML \(.*\(line 1, column \d+\)\); give "
                                          "them as a comma-separated list"):
        parse_sweep("distill.alpha=0.5, [0.8")


def test_several_sweeps_are_their_product_each_study_named_for_its_point():
    base = load_experiment("demo")
    exps = sweep_experiments(base, [parse_sweep("distill.alpha=0.5,0.9"),
                                    parse_sweep("distill.t2_scaling=true,false")])
    assert [e.name for e in exps] == ["demo-alpha0.5-t2_scalingtrue",
                                      "demo-alpha0.5-t2_scalingfalse",
                                      "demo-alpha0.9-t2_scalingtrue",
                                      "demo-alpha0.9-t2_scalingfalse"]
    assert [(e.distill.alpha, e.distill.t2_scaling) for e in exps] == [
        (0.5, True), (0.5, False), (0.9, True), (0.9, False)]
    assert exps[0].seeds == base.seeds  # nothing else changes
    point = points([parse_sweep("distill.temperatures=[1, 4]")])[0]
    assert study_name("x", point) == "x-temperatures1_4"


def test_a_sweep_refuses_what_it_cannot_do_clearly():
    base = load_experiment("demo")
    with pytest.raises(ConfigError, match=r"--sweep distill.alpha is given twice: give all its "
                                          r"values in one --sweep distill.alpha=A,B"):
        sweep_experiments(base, [parse_sweep("distill.alpha=0.5"),
                                 parse_sweep("distill.alpha=0.8")])
    with pytest.raises(ConfigError, match=r"--sweep distill.alpha and --set distill.alpha both "
                                          r"set distill.alpha"):
        sweep_experiments(base, [parse_sweep("distill.alpha=0.5,0.8")], ["distill.alpha"])
    with pytest.raises(ConfigError, match=r"distill.alpha: .*1.5"):
        sweep_experiments(base, [parse_sweep("distill.alpha=0.5,1.5")])


def test_run_sweep_refuses_a_bad_value_before_training(tmp_path):
    res = CliRunner().invoke(app, ["run", "demo", "--out", str(tmp_path), "--sweep",
                                   "distill.alpha=0.5,7"])
    assert res.exit_code == 1
    assert "distill.alpha" in _text(res) and "--sweep distill.alpha=0.5,7" in _text(res)
    assert not any(tmp_path.iterdir())


def test_a_dry_run_sweep_plans_each_study_and_trains_nothing(tmp_path):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(TINY)
    res = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path / "o"), "--dry-run",
                                   "--sweep", "distill.alpha=0.5,0.9"])
    assert res.exit_code == 0, res.output
    for name in ("tiny-alpha0.5", "tiny-alpha0.9"):
        assert f"{name}: 6 runs (0 already done, 6 to train) → {tmp_path / 'o' / name}" in \
            _text(res)
    assert "alpha: 0.9" in res.output and "kdfair compare" not in res.output
    assert not (tmp_path / "o" / "tiny-alpha0.5" / "runs").exists()


def test_sweep_runs_one_resumable_study_per_value_then_compare_names_alpha(tmp_path):
    """The done-when of the issue: two tiny digits studies that differ in α, compared."""
    exp = tmp_path / "tiny.yaml"
    exp.write_text(TINY)
    out = tmp_path / "out"
    args = ["run", str(exp), "--out", str(out), "--no-report", "--sweep",
            "distill.alpha=0.5,0.9"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "sweep: 2 studies: tiny-alpha0.5, tiny-alpha0.9" in _text(res)
    a, b = out / "tiny-alpha0.5", out / "tiny-alpha0.9"
    for root, alpha in ((a, 0.5), (b, 0.9)):
        stored = json.loads((root / "experiment.json").read_text())
        assert stored["distill"]["alpha"] == alpha and stored["name"] == root.name
        assert len(list((root / "runs").iterdir())) == 6
    assert f"side by side: kdfair compare {a} {b}" in _text(res)

    again = CliRunner().invoke(app, args)  # resumable: nothing is trained again
    assert again.exit_code == 0 and _text(again).count("6 runs (6 already done)") == 2

    cmp = CliRunner().invoke(app, ["compare", str(out), "--out", str(tmp_path / "cmp")])
    assert cmp.exit_code == 0, cmp.output
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| model | alpha=0.5 | alpha=0.9 |" in md
    assert "<th>alpha=0.5</th>" in (tmp_path / "cmp" / "report.html").read_text()
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    studies = pd.read_csv(tmp_path / "cmp" / "studies.csv")
    assert list(studies["label"]) == ["alpha=0.5", "alpha=0.9"]
    assert list(studies["distill.alpha"]) == [0.5, 0.9]
    # each cell is the study's own accuracy over its seeds, with the t interval
    for root, label in ((a, "alpha=0.5"), (b, "alpha=0.9")):
        accs = [json.loads((d / "metrics.json").read_text())["test_acc"] * 100
                for d in sorted((root / "runs").iterdir()) if d.name.startswith("ds-")]
        row = table[(table["label"] == label) & (table["measure"] == "accuracy")
                    & (table["model"] == "DS T=4")].iloc[0]
        assert row["mean"] == pytest.approx(sum(accs) / 2, abs=1e-4)  # test_acc: float32
        low, high = stats.t.interval(0.95, 1, loc=sum(accs) / 2, scale=stats.sem(accs))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(
            (max(low, 0.0), min(high, 100.0)), abs=1e-3)
    counts = pd.read_csv(tmp_path / "cmp" / "counts.csv")
    assert set(counts["count"]) == {"#SC", "#TC"} and set(counts["label"]) == {"alpha=0.5",
                                                                             "alpha=0.9"}
