"""Audit mode: predictions made elsewhere give the same tables as the same predictions stored as
kdfair runs; every input format reads the same; bad input names the parameter."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.numpy import save_file
from scipy.special import softmax
from typer.testing import CliRunner

from kdfair import api
from kdfair.auditing import audit, detect_kind, load_audit_file, to_logits
from kdfair.cli import app
from kdfair.errors import ConfigError, StoreError
from kdfair.store.arrays import load_predictions
from tests.analysis_fixtures import write_store

ROOT = Path(__file__).resolve().parents[1]


def stored_runs(root: Path):
    """(role, T) -> {seed: logits in index order}, and the labels, read plainly from a store."""
    out, labels = {}, None
    for d in sorted((root / "runs").iterdir()):
        spec = json.loads((d / "spec.json").read_text())
        z = load_predictions(d)  # either format: .npy arrays, or an older predictions.npz
        order = np.argsort(z["index"])
        out.setdefault((spec["role"], spec["temperature"]), {})[spec["seed"]] = \
            z["logits"][order]
        labels = z["labels"][order]
    return out, labels


def audit_of_store(root: Path, out: Path, name: str, convert=lambda a: a, **kw) -> Path:
    """Audit the predictions of store ``root`` (each passed through ``convert``)."""
    runs, labels = stored_runs(root)
    data = json.loads((root / "data.json").read_text())
    attrs = np.load(root / "attributes.npz") if (root / "attributes.npz").exists() else None
    groups = {a: attrs[a][np.argsort(attrs["index"])] for a in data["attributes"]} \
        if attrs is not None else None

    def seeds(key):
        return {s: convert(v) for s, v in runs.get(key, {}).items()}

    return audit(labels, teacher=seeds(("teacher", None)), nds=seeds(("nds", None)),
                 ds={t: seeds(("ds", t)) for (r, t) in runs if r == "ds"},
                 groups=groups, group_names=data["attributes"] or None,
                 class_names=data["class_names"], features=np.load(root / "test_features.npy"),
                 out=out, name=name, write_report=False, **kw)


def assert_same_tables(a: dict, b: dict, rtol: float = 1e-7) -> None:
    assert set(a) == set(b)
    for key in a:
        if key == "notes":  # the audit adds its own note
            continue
        drop = [c for c in a[key].columns if "run" in str(c)]  # run ids hash the spec
        left, right = (_without_run_ids(t.drop(columns=drop)) for t in (a[key], b[key]))
        pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=rtol, obj=key)


def _without_run_ids(df: pd.DataFrame) -> pd.DataFrame:
    """Run ids (…-<8 hex digits>) named inside text cells (e.g. warnings) hash the spec too."""
    df = df.reset_index(drop=True).copy()
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: re.sub(r"-[0-9a-f]{8}\b", "-…", v)
                                  if isinstance(v, str) else v)
    return df


def test_audit_gives_the_same_tables_as_the_store(tmp_path):
    store = write_store(tmp_path / "store", seeds=(0, 1, 2), attributes={"sex": ["f", "m"]})
    where = audit_of_store(store, tmp_path, "toy", distill={"alpha": 0.8, "t2_scaling": True})
    assert where == tmp_path / "toy"
    recorded = json.loads((where / "experiment.json").read_text())["distill"]
    assert recorded == {"alpha": 0.8, "t2_scaling": True, "temperatures": [2.0, 4.0]}
    tables = api.analyze(where)
    assert_same_tables(api.analyze(store), tables)
    assert any("Audit of predictions" in n for n in tables["notes"]["note"])
    planned = json.loads((where / "plan.json").read_text())["runs"]
    assert sorted(planned) == sorted(p.name for p in (where / "runs").iterdir())
    # a second audit of the same predictions resumes (nothing to write), others are refused
    audit_of_store(store, tmp_path, "toy")
    with pytest.raises(StoreError, match="already holds other runs"):
        audit_of_store(store, tmp_path, "toy", convert=lambda a: a[:, ::-1].copy())


def test_probabilities_give_the_same_tables_as_logits(tmp_path):
    store = write_store(tmp_path / "store", seeds=(0, 1), attributes={"g": ["a", "b"]})
    where = audit_of_store(store, tmp_path, "probs", convert=lambda a: softmax(a, 1))
    assert_same_tables(api.analyze(store), api.analyze(where), rtol=1e-4)


def test_predicted_classes_are_one_hot(tmp_path):
    store = write_store(tmp_path / "store", seeds=(0, 1), features=True)
    where = audit_of_store(store, tmp_path, "classes", convert=lambda a: a.argmax(1))
    a, b = api.analyze(store), api.analyze(where)
    for key in ("accuracy", "class_accuracy", "classwise", "disagreement"):  # class-only: exact
        pd.testing.assert_frame_equal(a[key].drop(columns=[c for c in a[key] if "run" in c]),
                                      b[key].drop(columns=[c for c in b[key] if "run" in c]))
    assert (b["individual"]["consistency_mean"].to_numpy()
            == pytest.approx(a["individual"]["consistency_mean"].to_numpy()))
    assert any("approximation" in n for n in b["notes"]["note"])


def test_kind_detection_and_conversion():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    probs = softmax(logits, 1)
    assert detect_kind(logits) == "logits" and detect_kind(probs) == "probabilities"
    assert detect_kind(np.array([0, 2])) == "classes"
    got, kind = to_logits(probs, "auto", 3, 2, "x")
    assert kind == "probabilities"
    np.testing.assert_allclose(softmax(got, 1), probs, rtol=1e-5)
    onehot, _ = to_logits(np.array([2, 0]), "auto", 3, 2, "x")
    np.testing.assert_allclose(softmax(onehot, 1), [[0, 0, 1], [1, 0, 0]], atol=1e-12)
    with pytest.raises(ConfigError, match="probabilities must be ≥ 0 with rows summing to 1"):
        to_logits(logits, "probabilities", 3, 2, "nds[0]")


@pytest.mark.parametrize("kwargs, message", [
    (dict(nds=[np.zeros((5, 3))]), r"nds\[0\]: expected \[4, 3\] logits"),
    (dict(nds=np.zeros((4, 3))), "nds: give a list with one prediction per seed"),
    (dict(), "give predictions for at least one role"),
    (dict(ds={-1: [np.zeros((4, 3))]}), "ds: temperatures must be > 0"),
    (dict(nds=[np.array([0, 1, 5, 0])], class_names=["a", "b", "c"]),
     r"nds\[0\]: predicted classes outside 0..2"),
    (dict(nds=["missing.npy"]), r"nds\[0\] \(missing.npy\): no file missing.npy"),
    (dict(nds=[np.zeros((4, 3))], groups={"g": [0, 1]}), r"groups\['g'\]: expected one group"),
    (dict(nds=[np.zeros((4, 3))], analysis={"significance": 2}),
     "analysis.significance: must be a number"),
    (dict(nds=[np.zeros((4, 3))], distill={"alfa": 1}), "distill: unknown key"),
])
def test_bad_input_names_the_parameter(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        audit(np.array([0, 1, 2, 0]), out=tmp_path, write_report=False, **kwargs)


def test_files_of_every_format_through_the_cli(tmp_path):
    """.npy, .npz, .safetensors and a CSV of class names read the same as the arrays."""
    store = write_store(tmp_path / "store", seeds=(0, 1), temperatures=(2.0,),
                        attributes={"sex": ["f", "m"]})
    runs, labels = stored_runs(store)
    data = json.loads((store / "data.json").read_text())
    d = tmp_path / "preds"
    d.mkdir()
    np.save(d / "labels.npy", labels)
    np.save(d / "features.npy", np.load(store / "test_features.npy"))
    attrs = np.load(store / "attributes.npz")
    np.savez(d / "groups.npz", sex=attrs["sex"][np.argsort(attrs["index"])])
    t = runs[("teacher", None)]
    np.save(d / "t0.npy", t[0])
    np.savez(d / "t1.npz", logits=t[1], other=np.zeros(3))
    n = runs[("nds", None)]
    save_file({"probabilities": softmax(n[0], 1).astype(np.float32)}, str(d / "n0.safetensors"))
    save_file({"logits": n[1]}, str(d / "n1.safetensors"))
    ds = runs[("ds", 2.0)]
    np.save(d / "d0.npy", ds[0])
    names = np.array(data["class_names"])[ds[1].argmax(1)]
    pd.DataFrame({"id": range(len(names)), "pred": names}).to_csv(d / "d1.csv", index=False)
    spec = {"name": "files", "labels": "labels.npy", "features": "features.npy",
            "groups": "groups.npz", "group_names": {"sex": ["f", "m"]},
            "class_names": data["class_names"], "teacher": ["t0.npy", "t1.npz"],
            "nds": ["n0.safetensors", "n1.safetensors"], "ds": {2: ["d0.npy", "d1.csv"]}}
    (d / "predictions.yaml").write_text(yaml.safe_dump(spec))
    res = CliRunner().invoke(app, ["audit", str(d / "predictions.yaml"), "--out",
                                   str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "summary" in res.output
    where = tmp_path / "out" / "files"
    assert (where / "report" / "report.html").exists()
    a, b = api.analyze(store), api.analyze(where)
    for key in ("accuracy", "class_accuracy", "fairness_runs", "classwise_counts"):
        pd.testing.assert_frame_equal(
            a[key].drop(columns=[c for c in a[key] if "run" in c]),
            b[key].drop(columns=[c for c in b[key] if "run" in c]), obj=key)


def test_predictions_file_errors_name_the_key(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "labels": "l.npy", "nds": "a.npy", "tachers": []}))
    with pytest.raises(ConfigError) as err:
        load_audit_file(p)
    assert "tachers: unknown field" in str(err.value) and "nds:" in str(err.value)
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 1 and "no predictions file" in res.output


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_audit_of_a_kdfair_study_gives_the_same_tables(tmp_path):
    """Done-when of the issue: the same predictions, trained by `kdfair.study`, then audited."""
    from tests.toy import toy_study

    toy_study(tmp_path / "run", seeds=(0, 1), temperatures=(1, 4))
    store = tmp_path / "run" / "toy"
    where = audit_of_store(store, tmp_path / "audit", "toy")
    assert_same_tables(api.analyze(store), api.analyze(where))


@pytest.mark.slow
def test_the_example_script_dumps_and_audits(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "audit_digits.py"),
                           "--out", str(tmp_path), "--epochs", "20", "--seeds", "0", "1",
                           "--temperatures", "4"], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    tables = api.analyze(tmp_path / "digits-audit")
    assert set(tables["accuracy"]["role"]) == {"teacher", "nds", "ds"}
    assert (tmp_path / "digits-audit" / "report" / "report.html").exists()
    assert "ink" in set(tables["fairness"]["attribute"])
