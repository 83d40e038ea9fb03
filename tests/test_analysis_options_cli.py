"""Analysis options on `kdfair audit` and `kdfair report` (--set), and an audit's PNG-only
report (its SVG / PDF twins doubled the time it took: benchmarks/audit_report.py)."""

import json

import numpy as np
import yaml
from typer.testing import CliRunner

from kdfair.cli import app


def _predictions(tmp_path):
    rng = np.random.default_rng(0)
    n, k = 120, 3
    y = rng.integers(0, k, n)
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "sex.npy", rng.integers(0, 2, n))

    def logits(name):
        z = rng.normal(size=(n, k)).astype(np.float32)
        z[np.arange(n), y] += 2.0
        np.save(tmp_path / f"{name}.npy", z)
        return f"{name}.npy"

    spec = {"name": "opts", "labels": "labels.npy",
            "teacher": [logits("t0"), logits("t1")], "nds": [logits("n0"), logits("n1")],
            "ds": {4: [logits("d0"), logits("d1")]}, "groups": {"sex": "sex.npy"},
            "group_names": {"sex": ["female", "male"]}}
    path = tmp_path / "predictions.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_audit_set_is_recorded_and_report_set_changes_one_report(tmp_path):
    path = _predictions(tmp_path)
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["audit", str(path), "--out", str(out),
                                   "--set", "analysis.pairing=paired"])
    assert res.exit_code == 0, res.output
    root = out / "opts"
    analysis = json.loads((root / "experiment.json").read_text())["analysis"]
    assert analysis["pairing"] == "paired" and analysis["vector_figures"] is False
    assert list((root / "report").glob("*.png")) and not list((root / "report").glob("*.svg"))
    # kdfair report --set: this report's options over the audit's own (pairing stays paired)
    res = CliRunner().invoke(app, ["report", str(root), "--set", "vector_figures=true",
                                   "--set", "analysis.significance=0.01"])
    assert res.exit_code == 0, res.output
    assert list((root / "report").glob("*.svg")) and list((root / "report").glob("*.pdf"))
    md = (root / "report" / "report.md").read_text()
    assert "paired" in md and "0.01" in md
    # not recorded: the audit's experiment.json is unchanged
    assert json.loads((root / "experiment.json").read_text())["analysis"] == analysis


def test_set_of_anything_but_an_analysis_option_is_refused_naming_the_fix(tmp_path):
    path = _predictions(tmp_path)
    res = CliRunner().invoke(app, ["audit", str(path), "--out", str(tmp_path / "r"),
                                   "--set", "distill.alpha=0.5"])
    assert res.exit_code != 0
    assert "--set distill.alpha=0.5: only analysis options can be changed here" in res.output
    assert "--set analysis.pairing=paired" in res.output
    res = CliRunner().invoke(app, ["audit", str(path), "--out", str(tmp_path / "r"),
                                   "--no-report"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path / "r" / "opts"),
                                   "--set", "seeds=[0]"])
    assert res.exit_code != 0 and "analysis.seeds: unknown option" in res.output
    res = CliRunner().invoke(app, ["audit", str(path), "--out", str(tmp_path / "r"),
                                   "--set", "analysis.pairing=sometimes"])
    assert res.exit_code != 0 and "pairing" in res.output and "sometimes" in res.output
