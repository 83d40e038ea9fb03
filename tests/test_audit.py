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
from kdfair.config import Experiment
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
    exp = Experiment.model_validate(json.loads((where / "experiment.json").read_text()))
    assert (exp.name, exp.seeds, exp.distill.temperatures) == ("toy", (0, 1, 2), (2.0, 4.0))
    assert (exp.distill.alpha, exp.distill.t2_scaling) == (0.8, True)
    tables = api.analyze(where)
    assert_same_tables(api.analyze(store), tables)
    assert any("Audit of predictions" in n for n in tables["notes"]["note"])
    planned = json.loads((where / "plan.json").read_text())["runs"]
    assert sorted(planned) == sorted(p.name for p in (where / "runs").iterdir())
    # a second audit of the same predictions resumes (nothing to write); other predictions are
    # refused by the study's stale-store check, which names the problem and the fix
    audit_of_store(store, tmp_path, "toy")
    with pytest.raises(StoreError, match="different configuration.*other predictions.*new "
                                         "directory"):
        audit_of_store(store, tmp_path, "toy", convert=lambda a: a[:, ::-1].copy())


def test_an_audit_is_refused_over_a_store_of_other_arrays(tmp_path):
    """Other labels, groups or features: the same stale check as a study's, data.json kept."""
    y = np.array([0, 1, 2, 0, 1, 2])
    nds = [np.eye(3)[y] * 5, np.eye(3)[(y + 1) % 3] * 5]
    audit(y, nds=nds, out=tmp_path, name="a", write_report=False)
    before = (tmp_path / "a" / "data.json").read_text()
    with pytest.raises(StoreError, match=r"different configuration.*new directory \(`out`\), or "
                                         "move the old one aside"):
        audit(y, nds=nds, groups={"g": [0, 1, 0, 1, 0, 1]}, out=tmp_path, name="a",
              write_report=False)
    assert (tmp_path / "a" / "data.json").read_text() == before


def test_an_audited_store_is_written_as_a_study_s(tmp_path):
    """experiment.json validates as an Experiment; data.json has a study's keys (input shape and
    normalisation included); DS pair with teachers by the study's rule."""
    from kdfair import runner
    from kdfair.config import experiment_from_dict

    exp = experiment_from_dict({
        "name": "d", "dataset": {"name": "digits", "size": 16}, "device": "cpu",
        "teacher": {"model": {"arch": "lenet5"}}, "student": {"model": {"arch": "lenet5"}},
        "seeds": [0, 1], "distill": {"temperatures": [2]}})
    runner.prepare(exp, tmp_path / "study", runner.load_data(exp))  # writes no run
    study = json.loads((tmp_path / "study" / "data.json").read_text())
    y = np.array([0, 1, 2, 0, 1, 2])
    logits = {s: np.eye(3)[(y + s) % 3] * 4 for s in range(3)}
    where = audit(y, teacher=[logits[0], logits[1]], nds=[logits[0], logits[2]],
                  ds={2: {0: logits[1], 1: logits[2]}},
                  distill={"teacher_policy": "paired"}, dataset="my data",
                  teacher_arch="resnet8", student_arch="my-net", out=tmp_path, name="a",
                  write_report=False)
    audited = json.loads((where / "data.json").read_text())
    assert set(audited) == set(study)
    assert (audited["input_shape"], audited["mean"], audited["std"]) == ([], [], [])
    assert audited["dataset"] == "my data" and audited["n_test"] == 6
    assert not (where / "test_features.npy").exists()  # no features: I(f) is skipped
    exp = Experiment.model_validate(json.loads((where / "experiment.json").read_text()))
    assert (exp.dataset.name, exp.teacher.model.arch, exp.student.model.arch) == \
        ("my data", "resnet8", "my-net")
    specs = {(s["role"], s["seed"]): s for s in
             (json.loads((d / "spec.json").read_text()) for d in (where / "runs").iterdir())}
    teacher = {s: specs[("teacher", s)]["run_id"] for s in (0, 1)}
    assert [specs[("ds", s)]["teacher_run_id"] for s in range(2)] == \
        [teacher[0], teacher[1]]  # paired: each DS with the teacher of its seed
    # a DS seed with no teacher among several is not guessed: one clear line
    with pytest.raises(ConfigError, match=r"a DS of seed 2 has no teacher of seed 2 \(teacher "
                       r"seeds: 0, 1\).*`distill.teacher_policy` to single"):
        audit(y, teacher=[logits[0], logits[1]], nds=[logits[0], logits[2]],
              ds={2: {0: logits[1], 2: logits[0]}}, out=tmp_path, name="c",
              write_report=False)
    assert not (tmp_path / "c").exists()  # nothing written
    single = audit(y, teacher=[logits[0], logits[1]], ds={2: [logits[1], logits[2]]},
                   distill={"teacher_policy": "single"}, out=tmp_path, name="b",
                   write_report=False)
    ids = {json.loads((d / "spec.json").read_text())["teacher_run_id"]
           for d in (single / "runs").iterdir()} - {None}
    assert len(ids) == 1


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", ""])
def test_an_audit_name_follows_the_study_s_rule(tmp_path, name):
    with pytest.raises(ConfigError, match=r"invalid audit .*\n  name: .* is not allowed: use "
                                          "letters, digits"):
        audit(np.array([0, 1]), nds=[np.array([0, 1])], out=tmp_path, name=name,
              write_report=False)
    assert not any(tmp_path.iterdir())
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"name": name, "labels": "l.npy", "nds": ["a.npy"]}))
    with pytest.raises(ConfigError, match=r"\n  name: .* is not allowed"):
        load_audit_file(p)


def test_the_study_s_two_seed_rule(tmp_path):
    y = np.array([0, 1, 0, 1])
    where = audit(y, nds=[y], ds={2: [y]}, out=tmp_path, name="one", write_report=False)
    assert json.loads((where / "experiment.json").read_text())["analysis"]["tests"] is False
    with pytest.raises(ConfigError, match="seeds: Welch t-tests need at least 2 seeds"):
        audit(y, nds=[y], analysis={"tests": True}, out=tmp_path, name="two",
              write_report=False)


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
    (dict(nds=[np.zeros((5, 3))]), r"nds\[0\]: 5 rows for 4 labels: give one row per input"),
    (dict(nds=[np.zeros((4, 2))], class_names=["a", "b", "c"]),
     r"nds\[0\]: expected \[4, 3\] logits"),
    (dict(nds=np.zeros((4, 3))), "nds: give a list with one prediction per seed"),
    (dict(), "give predictions for at least one role"),
    (dict(ds={-1: [np.zeros((4, 3))]}), "ds: temperatures must be > 0"),
    (dict(nds=[np.array([0, 1, 5, 0])], class_names=["a", "b", "c"]),
     r"nds\[0\]: predicted classes outside 0..2"),
    (dict(nds=["missing.npy"]), r"nds\[0\] \(missing.npy\): no file missing.npy"),
    (dict(nds=[np.zeros((4, 3))], groups={"g": [0, 1]}), r"groups\['g'\]: 2 rows for 4 labels"),
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


def test_labels_coded_from_one_are_refused_not_averaged_over_an_empty_class(tmp_path):
    """Classes 1/2 without class_names would add an empty class 0 that every per-class number
    (class-wise tests, one-vs-rest DPD / EOD) averages over: one clear line instead."""
    y = np.array([1, 2, 1, 2, 2, 1])
    with pytest.raises(ConfigError, match=r"labels: the labels are coded 1\.\.2, so class 0 of "
                       r"0\.\.2 has no input: .* Give classes \(label value → class name, class 0 "
                       r"first, e\.g\. classes=\{1: '1', 2: '2'\}\) or subtract 1 from the labels"):
        audit(y, teacher=[y, y], nds=[y, y[::-1]], out=tmp_path, write_report=False)
    with pytest.raises(ConfigError, match=r"labels are coded 0, 2, so class 1 of 0\.\.2 has no "):
        audit(np.array([0, 2, 0, 2]), teacher=[np.array([0, 2, 0, 2])] * 2, out=tmp_path,
              name="gap", write_report=False)
    assert not any(tmp_path.iterdir())
    # the same labels with their names given: exact, class 0 named and empty by choice
    ok = audit(y, teacher=[y, y], nds=[y, y[::-1]], class_names=["none", "a", "b"],
               out=tmp_path, name="named", write_report=False)
    assert json.loads((ok / "data.json").read_text())["class_names"] == ["none", "a", "b"]
