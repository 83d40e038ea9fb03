"""Bring your own data: each stumbling block a new user met (issue 23) reproduced with its input,
asserting the clear message or the correct number. German credit is coded as UCI codes it
(labels 1/2, sex as text); the data here are synthetic in that coding."""

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference

import kdfair
from kdfair import api
from kdfair.analysis.classwise import plan_test
from kdfair.auditing import audit
from kdfair.errors import ConfigError
from kdfair.store.arrays import load_predictions

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05}


def credit(n: int, seed: int):
    """(x [n, 6] float32, labels coded 1/2, {sex: 'male'/'female', age: 0/1})."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = np.where(x[:, 0] + 0.5 * rng.normal(size=n) > 0, 2, 1)
    sex = np.where(rng.random(n) < 0.4, "female", "male")
    return x, y, {"sex": sex, "age": rng.integers(0, 2, n)}


def mlp(num_classes: int, input_shape: tuple[int, ...]):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(input_shape[0], 8), nn.ReLU(), nn.Linear(8, num_classes))


def _study(tmp_path, name="credit", **kw):
    args = dict(temperatures=[2], seeds=[0, 1], teacher_train=TRAIN, student_train=TRAIN,
                device="cpu", out=tmp_path, write_report=False, progress=False)
    return api.study(name, credit(96, 0), kw.pop("val", credit(24, 1)), credit(64, 2), mlp, mlp,
                     **{**args, **kw})


def _runs(root):
    """(role, seed, predicted classes, labels) of every stored run."""
    out = []
    for d in sorted((root / "runs").iterdir()):
        spec = json.loads((d / "spec.json").read_text())
        z = load_predictions(d)
        order = np.argsort(z["index"])
        out.append((spec["role"], spec["seed"], z["logits"][order].argmax(1),
                    z["labels"][order]))
    return out


# --- 1. labels coded 1/2: refused, or mapped to Fairlearn's binary DPD ----------------------


def test_a_study_of_labels_coded_1_2_is_refused_naming_the_coding(tmp_path):
    with pytest.raises(ConfigError) as err:
        _study(tmp_path)
    text = str(err.value)
    assert text.startswith("train: the labels are coded 1..2, so class 0 of 0..2 has no input")
    assert "classes={1: '1', 2: '2'}" in text and "subtract 1 from the labels" in text
    assert not (tmp_path / "credit").exists()  # nothing written


def test_a_study_with_a_classes_mapping_gives_fairlearns_binary_dpd(tmp_path):
    """The 1/2-coded labels mapped by classes=: 2 classes, and the DPD of every model is
    Fairlearn's binary DPD of its predictions (not a mean over 3 one-vs-rest problems). The
    study also takes the sex attribute as text, and val=None."""
    _study(tmp_path, classes={1: "good", 2: "bad"}, val=None)
    root = tmp_path / "credit"
    data = json.loads((root / "data.json").read_text())
    assert data["class_names"] == ["good", "bad"]
    assert data["attributes"]["sex"] == ["female", "male"]  # sorted names, as the audit codes
    test_x, test_y, test_groups = credit(64, 2)
    sex = test_groups["sex"]
    fair = kdfair.analyze(root)["fairness"]
    dpd = fair[fair["attribute"] == "sex"].set_index(["role", "T"])["dpd_mean"]
    by_model: dict = {}
    for role, _seed, pred, labels in _runs(root):
        np.testing.assert_array_equal(labels, test_y - 1)  # good=0, bad=1, in test order
        by_model.setdefault(role, []).append(
            100 * demographic_parity_difference(labels, pred, sensitive_features=sex))
    for role, values in by_model.items():
        t = 2.0 if role == "ds" else np.nan
        got = dpd[(role, t)] if role == "ds" else dpd[role].iloc[0]
        assert got == pytest.approx(np.mean(values), abs=1e-9), role


def test_an_audit_of_labels_coded_1_2_refuses_or_maps_to_fairlearn(tmp_path):
    x, y, groups = credit(200, 3)
    rng = np.random.default_rng(1)
    preds = [np.where(rng.random(len(y)) < 0.8, y, 3 - y) for _ in range(2)]
    with pytest.raises(ConfigError, match=r"^labels: the labels are coded 1\.\.2, so class 0 "
                       r"of 0\.\.2 has no input: .* or subtract 1 from the labels and the "
                       "predicted classes"):
        audit(y, nds=preds, groups={"sex": groups["sex"]}, out=tmp_path, write_report=False)
    # a model that kept an empty output for class 0 (3 logits) is refused the same way
    three = np.stack([np.full(len(y), -9.0), 1.0 * (preds[0] == 1), 1.0 * (preds[0] == 2)], 1)
    with pytest.raises(ConfigError, match=r"labels are coded 1\.\.2, so class 0 of 0\.\.2"):
        audit(y, nds=[three, three], out=tmp_path, write_report=False)
    root = audit(y, nds=preds, groups={"sex": groups["sex"]}, classes={1: "good", 2: "bad"},
                 out=tmp_path, name="mapped", write_report=False)
    got = kdfair.analyze(root)["fairness"].set_index("attribute").loc["sex", "dpd_mean"]
    expected = [100 * demographic_parity_difference(y, p, sensitive_features=groups["sex"])
                for p in preds]
    assert got == pytest.approx(np.mean(expected), abs=1e-9)
    assert json.loads((root / "data.json").read_text())["class_names"] == ["good", "bad"]


# --- 2. attribute names and codes must match the group names ---------------------------------


def test_too_few_group_names_are_refused_naming_both(tmp_path):
    with pytest.raises(ConfigError, match=r"^groups of 'age' are coded 0\.\.1 but "
                       r"attribute_groups\['age'\] has 1 name\(s\) \('young'\): give one name "
                       r"per code"):
        _study(tmp_path, classes=[1, 2], attribute_groups={"age": ["young"]})
    x, y, groups = credit(40, 4)
    with pytest.raises(ConfigError, match=r"^groups of 'age' are coded 0\.\.1 but "
                       r"group_names\['age'\] has 1 name"):
        audit(y - 1, nds=[y - 1, y - 1], groups={"age": groups["age"]},
              group_names={"age": ["young"]}, out=tmp_path, write_report=False)
    with pytest.raises(ConfigError, match=r"groups of 'sex': 'male' are not in "
                       r"group_names\['sex'\] \('female'\)"):
        audit(y - 1, nds=[y - 1], groups={"sex": groups["sex"]},
              group_names={"sex": ["female"]}, out=tmp_path, write_report=False)
    assert not any(tmp_path.iterdir())


def test_an_unknown_attribute_is_refused_naming_both(tmp_path):
    with pytest.raises(ConfigError, match=r"^attribute_groups names attribute\(s\) 'gender' "
                       r"that the data do not have \(attributes given: 'sex', 'age'\)"):
        _study(tmp_path, classes=[1, 2], attribute_groups={"gender": ["f", "m"]})
    x, y, groups = credit(40, 4)
    with pytest.raises(ConfigError, match=r"^group_names names attribute\(s\) 'gender'"):
        audit(y - 1, nds=[y - 1], groups={"sex": groups["sex"]},
              group_names={"gender": ["f", "m"]}, out=tmp_path, write_report=False)


# --- 5. errors that name the fix; inputs accepted as a user gives them ---------------------------


def test_val_none_holds_out_a_tenth_of_train_with_a_fixed_seed():
    x, y, groups = credit(50, 0)
    (tr, va) = api._held_out(x, y, groups)
    assert len(va[1]) == 5 and len(tr[1]) == 45
    both = np.concatenate([tr[0], va[0]])
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, x.tolist()))
    again = api._held_out(x, y, groups)[1]
    np.testing.assert_array_equal(again[0], va[0])
    assert list(va[2]["sex"]) == [groups["sex"][i] for i in
                                  [int(np.flatnonzero((x == r).all(1))[0]) for r in va[0]]]


def test_labels_shorter_than_the_inputs_are_blamed_on_the_labels(tmp_path):
    x, y, groups = credit(64, 2)
    with pytest.raises(ConfigError, match=r"^test labels \(y\): 60 labels, but every array "
                       r"given per input \(test x, test groups 'sex', test groups 'age'\) has "
                       "64 rows: give one label per input"):
        api.study("short", credit(96, 0), credit(24, 1), (x, y[:60], groups), mlp, mlp,
                  classes=[1, 2], out=tmp_path, progress=False)
    preds = [np.zeros((64, 2))] * 2
    with pytest.raises(ConfigError, match=r"^labels: 60 labels, but every array given per "
                       r"input \(nds\[0\], nds\[1\], groups\['sex'\]\) has 64 rows"):
        audit(y[:60] - 1, nds=preds, groups={"sex": groups["sex"]}, out=tmp_path,
              write_report=False)


def test_string_temperature_keys_and_single_logit_outputs(tmp_path):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 80)
    z = [rng.normal(size=80) + 2 * (y - 0.5) for _ in range(3)]
    root = audit(y, nds=[z[0], z[1][:, None]], ds={"4": [z[1], z[2]]}, out=tmp_path,
                 write_report=False)
    acc = kdfair.analyze(root)["accuracy"].set_index(["role", "T"])["acc_mean"]
    assert acc[("ds", 4.0)] == pytest.approx(100 * np.mean([np.mean((v > 0) == y)
                                                            for v in z[1:]]))
    assert acc.loc["nds"].iloc[0] == pytest.approx(
        100 * np.mean([np.mean((v > 0) == y) for v in z[:2]]))
    p = 1 / (1 + np.exp(-z[0]))
    with pytest.raises(ConfigError, match=r"nds\[0\]: one value per input, all in \[0, 1\]: "
                       "pass kind='probabilities' if they are P\\(class 1\\)"):
        audit(y, nds=[p], out=tmp_path, name="p", write_report=False)
    prob = audit(y, nds=[p, p], kind="probabilities", out=tmp_path, name="p",
                 write_report=False)
    assert kdfair.analyze(prob)["accuracy"]["acc_mean"].iloc[0] == pytest.approx(
        100 * np.mean((p > 0.5) == y))
    with pytest.raises(ConfigError, match=r"ds: temperature 'four' is not a number; key each "
                       r"temperature by its value, e.g\. ds=\{4: \[\.\.\.\]\}"):
        audit(y, ds={"four": [z[0]]}, out=tmp_path, name="t", write_report=False)
    one = np.array([0.3, -1.2, 2.5, 0.1])
    with pytest.raises(ConfigError, match=r"^labels: the labels are coded 0\.\.2, but the "
                       r"predictions have 2 classes \(columns; a binary model's single output "
                       r"counts as 2\)"):
        audit(np.array([0, 1, 2, 1]), nds=[one], out=tmp_path, name="three", write_report=False)
    with pytest.raises(ConfigError, match=r"nds\[0\]: one value per input is a binary model's "
                       "output, but there are 3 classes"):
        audit(np.array([0, 1, 2, 1]), nds=[one], class_names=["a", "b", "c"], out=tmp_path,
              name="three", write_report=False)


# --- 3. seed sets that do not pair --------------------------------------------------------------


def _logits(y, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(len(y), 2)) + 2 * np.eye(2)[y]


def test_unpaired_teacher_seeds_are_refused_with_the_fix(tmp_path):
    y = np.random.default_rng(0).integers(0, 2, 40)
    with pytest.raises(ConfigError, match=r"a DS of seed 20 has no teacher of seed 20 \(teacher "
                       r"seeds: 0, 1, 2\).*or set `distill.teacher_policy` to single"):
        audit(y, teacher=[_logits(y, s) for s in range(3)],
              ds={4: {s: _logits(y, s) for s in (20, 21, 22)}}, out=tmp_path,
              write_report=False)


def test_unpaired_nds_seeds_are_paired_explicitly_and_said(tmp_path):
    """DS seeds the NDS lacks: each is compared with every NDS run, and both the notes and the
    disagreement caption say so (the caption no longer claims 'the NDS of the same seed')."""
    y = np.random.default_rng(0).integers(0, 2, 40)
    root = audit(y, nds={0: _logits(y, 0), 1: _logits(y, 1)},
                 ds={4: {s: _logits(y, 10 + s) for s in (0, 1, 2)}}, out=tmp_path)
    t = kdfair.analyze(root)
    assert any("DS seed(s) 2 have no NDS of the same seed (NDS seeds: 0, 1)" in n
               for n in t["notes"]["note"])
    pairs = t["disagreement_runs"]
    assert len(pairs[pairs["comparison"] == "nds_vs_ds"]) == 1 + 1 + 2
    text = (root / "report" / "report.md").read_text()
    assert "DS seed(s) 2, which no NDS run has, are compared with every NDS run" in text


# --- 2 (issue). tests run wherever they can ----------------------------------------------------


def test_each_comparison_says_why_it_has_no_test():
    assert plan_test("nds", 1, 3).reason == (
        "NDS has 1 seed: DS vs NDS untestable (a test needs at least 2 seeds per side)")
    assert plan_test("teacher", 3, 1, tests_enabled=False).reason.startswith(
        "DS has 1 seed(s) at this T: DS vs teacher untestable")
    # a study of one seed turns tests off; its comparisons say why, not 'switched off'
    assert "untestable" in plan_test("nds", 1, 1, tests_enabled=False).reason
    assert plan_test("teacher", 1, 3).test == "one-sample"
    assert "switched off" in plan_test("nds", 3, 3, tests_enabled=False).reason


def test_unequal_seed_counts_test_what_they_can(tmp_path):
    """NDS with 1 seed, teacher and DS with 3: DS vs teacher is tested, DS vs NDS says why."""
    y = np.random.default_rng(0).integers(0, 2, 60)
    root = audit(y, teacher=[_logits(y, s) for s in range(3)], nds=[_logits(y, 5)],
                 ds={2: [_logits(y, 10 + s) for s in range(3)]}, out=tmp_path)
    c = kdfair.analyze(root)["classwise_counts"].set_index("comparison")
    assert set(c.loc["teacher_vs_ds", "test"]) == {"welch"}
    assert set(c.loc["nds_vs_ds", "reason"]) == {
        "NDS has 1 seed: DS vs NDS untestable (a test needs at least 2 seeds per side)"}
    text = (root / "report" / "report.md").read_text()
    assert "switched off" not in text and "NDS has 1 seed: DS vs NDS untestable" in text


# --- 4. text that fits the data ------------------------------------------------------------------


def test_a_byo_report_does_not_cite_the_papers_tables(tmp_path):
    """An audit that shows neither of the paper's moderate-T phenomena: warned in the regime's
    own words, no '(paper: Table 2)', no 'Nor' with nothing before it."""
    from kdfair.analysis.checks import phenomenon_warnings

    nan = float("nan")
    acc = pd.DataFrame({"role": ["nds", "ds"], "T": [nan, 2.0], "acc_mean": [80.0, 81.0]})
    fair = pd.DataFrame({"role": ["nds", "ds"], "T": [nan, 2.0], "attribute": "sex",
                         "eod_mean": [5.0, 6.0], "dpd_mean": [3.0, 4.0]})
    (only,) = phenomenon_warnings(acc, fair, paper=False)
    assert only.text.startswith("Distillation does not narrow group-fairness gaps here: every "
                                "DS at T ≤ 10 has a mean at least the NDS's in")
    (both_acc, both_fair) = phenomenon_warnings(acc.assign(acc_mean=[80.0, 79.0]), fair,
                                                paper=False)
    assert both_acc.text.startswith("No DS at T ≤ 10 reaches the NDS's mean accuracy")
    assert "paper" not in both_acc.text + both_fair.text
    assert both_fair.text.startswith("Nor does distillation narrow")
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    sex = np.where(rng.random(200) < 0.5, "f", "m")
    good = [np.where(rng.random(200) < 0.9, y, 1 - y) for _ in range(2)]
    bad = [np.where((rng.random(200) < 0.7) & (sex == "f"), y, 1 - y) for _ in range(2)]
    root = audit(y, teacher=good, nds=good, ds={2: bad}, groups={"sex": sex}, out=tmp_path)
    text = (root / "report" / "report.md").read_text()
    assert "reaches the NDS's mean accuracy" in text
    assert "Table 2" not in text and "Tables 1–2" not in text and "paper's effects" not in text


def test_the_command_line_audit_checks_the_same_and_takes_classes(tmp_path):
    """`kdfair audit predictions.yaml`: 1/2-coded labels refused with the fix (exit 1, no
    traceback, nothing written); with `classes:` they give Fairlearn's binary DPD."""
    import yaml
    from typer.testing import CliRunner

    from kdfair.cli import app

    x, y, groups = credit(120, 6)
    rng = np.random.default_rng(3)
    np.save(tmp_path / "labels.npy", y)
    for s in range(2):
        np.save(tmp_path / f"nds{s}.npy", np.where(rng.random(len(y)) < 0.8, y, 3 - y))
    pd.DataFrame({"sex": groups["sex"]}).to_csv(tmp_path / "groups.csv", index=False)
    spec = {"name": "credit-cli", "labels": "labels.npy", "nds": ["nds0.npy", "nds1.npy"],
            "groups": "groups.csv"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "p.yaml"), "--out", str(out),
                                   "--no-report"])
    assert res.exit_code == 1
    assert "labels: the labels are coded 1..2, so class 0 of 0..2 has no input" in res.output
    assert "Traceback" not in res.output and not (out / "credit-cli").exists()
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**spec, "classes": {1: "good", 2: "bad"}}))
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "p.yaml"), "--out", str(out),
                                   "--no-report"])
    assert res.exit_code == 0, res.output
    got = kdfair.analyze(out / "credit-cli")["fairness"]["dpd_mean"].iloc[0]
    expected = [100 * demographic_parity_difference(
        y, np.load(tmp_path / f"nds{s}.npy"), sensitive_features=groups["sex"]) for s in range(2)]
    assert got == pytest.approx(np.mean(expected), abs=1e-9)


def test_a_one_seed_study_says_why_each_comparison_is_untested(tmp_path):
    _study(tmp_path, name="one", classes=[1, 2], seeds=[0], write_report=True)
    c = kdfair.analyze(tmp_path / "one")["classwise_counts"]
    assert set(c["reason"]) == {
        "DS has 1 seed(s) at this T: DS vs NDS untestable (a test needs at least 2 seeds per "
        "side)",
        "DS has 1 seed(s) at this T: DS vs teacher untestable (a test needs at least 2 seeds "
        "per side)"}
    text = (tmp_path / "one" / "report" / "report.md").read_text()
    assert "switched off" not in text and "DS vs NDS untestable" in text


def test_text_labels_in_an_audit_are_class_names(tmp_path):
    """Text labels and text predicted classes code the classes in sorted order; with logits,
    whose column order only class_names can say, they are refused naming it."""
    y = np.array(["good", "bad", "good", "good", "bad", "bad"])
    pred = [np.array(["good", "bad", "bad", "good", "bad", "good"]), y]
    root = audit(y, nds=pred, out=tmp_path, write_report=False)
    assert json.loads((root / "data.json").read_text())["class_names"] == ["bad", "good"]
    assert kdfair.analyze(root)["accuracy"]["acc_mean"].iloc[0] == pytest.approx(
        100 * np.mean([np.mean(p == y) for p in pred]))
    with pytest.raises(ConfigError, match=r"^labels: class names \(text\) need class_names, the "
                       r"name of each class in class order"):
        audit(y, nds=[np.zeros((6, 2))] * 2, out=tmp_path, name="logits", write_report=False)


def test_group_codes_with_blanks_are_unknown_and_classes_must_agree_with_num_classes():
    from kdfair.inputs import encode_groups, encode_labels

    codes, names = encode_groups({"test": {"age": np.array([0.0, np.nan, 1.0])}})
    assert codes["test"]["age"].tolist() == [0, -1, 1] and names == {"age": ["0", "1"]}
    with pytest.raises(ConfigError, match=r"^num_classes is 3 but classes names 2"):
        encode_labels({"train": np.array([1, 2])}, classes=[1, 2], num_classes=3)
    with pytest.raises(ConfigError, match=r"^train: values \['7'\] are not in classes: give "
                       "every label value a class in classes"):
        encode_labels({"train": np.array([1, 2, 7])}, classes={1: "good", 2: "bad"})


def test_paper_wording_is_for_paper_presets_and_a_weak_teacher_says_what_to_set():
    """The report cites the paper's tables only where analysis/paper.py has numbers for the
    study's name; a teacher below the NDS is told which setting to change."""
    from kdfair.analysis.checks import phenomenon_warnings, run_warnings
    from kdfair.analysis.paper import paper_entry

    assert paper_entry("cifar100-r56-r20")[1] is not None
    assert paper_entry("credit")[1] is None and paper_entry("audit")[1] is None
    nan = float("nan")
    acc = pd.DataFrame({"role": ["teacher", "nds", "ds"], "T": [nan, nan, 2.0],
                        "acc_mean": [70.0, 75.0, 74.0], "acc_std": [0.0, 0.0, 0.0]})
    (paper,) = phenomenon_warnings(acc, pd.DataFrame(), paper=True)
    assert "the paper reports DS above the NDS (Tables 1–2)" in paper.text
    runs = pd.DataFrame({"role": ["teacher", "nds"], "T": [nan, nan], "run_id": ["t", "n"],
                         "seed": [0, 0]})
    preds = [np.array([0, 1, 0, 1])] * 2
    (weak,) = [w for w in run_warnings(runs, preds, 2, acc) if w.code == "weak_teacher"]
    assert "teacher_train in kdfair.study" in weak.text


# --- review of issue 23: 1/2-coded labels beside two columns; messages that stay short ------


def test_an_audit_of_1_2_coded_probabilities_names_classes_and_maps_to_fairlearn(tmp_path):
    """Probabilities [N, 2] of a model trained on UCI's 1/2 coding (columns: P(1), P(2)): the
    refusal names classes= and the shift (not 'give one column per class'); with classes= the
    DPD is Fairlearn's binary DPD and the accuracy the columns' argmax in the labels' coding."""
    _, y, groups = credit(200, 7)
    rng = np.random.default_rng(4)
    probs = []
    for _ in range(2):
        p2 = np.clip(0.5 + 0.3 * (y == 2) - 0.15 + 0.3 * rng.normal(size=len(y)), 0.01, 0.99)
        probs.append(np.stack([1 - p2, p2], 1))
    with pytest.raises(ConfigError, match=r"^labels: the labels are coded 1\.\.2, but the "
                       r"predictions have 2 classes \(columns; .*\), counted from 0: give classes "
                       r"\(label value → class name, class 0 first, e\.g\. classes=\{1: '1', 2: "
                       r"'2'\}\) or subtract 1 from the labels"):
        audit(y, nds=probs, groups={"sex": groups["sex"]}, out=tmp_path, write_report=False)
    with pytest.raises(ConfigError, match=r"coded -1, 1, but the predictions have 2 classes "
                       r".*classes=\{-1: '-1', 1: '1'\}\)$"):  # no 'subtract' for -1/1
        audit(2 * y - 3, nds=probs, out=tmp_path, write_report=False)
    assert not any(tmp_path.iterdir())
    root = audit(y, nds=probs, groups={"sex": groups["sex"]}, classes={1: "good", 2: "bad"},
                 out=tmp_path, name="probs", write_report=False)
    t = kdfair.analyze(root)
    pred = [np.where(p[:, 1] > p[:, 0], 2, 1) for p in probs]
    assert t["accuracy"]["acc_mean"].iloc[0] == pytest.approx(
        100 * np.mean([np.mean(p == y) for p in pred]))
    expected = [100 * demographic_parity_difference((y == 2).astype(int), (p == 2).astype(int),
                                                    sensitive_features=groups["sex"])
                for p in pred]
    got = t["fairness"].set_index("attribute").loc["sex", "dpd_mean"]
    assert got == pytest.approx(np.mean(expected), abs=1e-9)


def test_messages_cut_long_values_and_label_ids_do_not_exhaust_memory():
    from kdfair.inputs import encode_labels, temperature

    long = "z" * 300
    with pytest.raises(ConfigError) as err:
        encode_labels({"labels": np.array([long, "b"])}, class_names=["a", "b"])
    assert "z" * 40 + "…" in str(err.value) and "z" * 41 not in str(err.value)
    with pytest.raises(ConfigError) as err:
        encode_labels({"labels": np.array([long, "b"], dtype=object)}, classes=["a", "b"])
    assert "z" * 41 not in str(err.value)
    with pytest.raises(ConfigError) as err:
        temperature(long)
    assert "z" * 41 not in str(err.value)
    # labels that are ids (0 and 10⁹): one message, no list of 10⁹ classes built
    with pytest.raises(ConfigError, match=r"^labels: the labels are coded 0, 1000000000, so class "
                       r"1, 2, .*, 10 … \(999999999 classes\) of 0\.\.1000000000 has no input"):
        encode_labels({"labels": np.array([0, 10**9, 0])})


def test_num_classes_must_agree_with_class_names_and_text_labels():
    from kdfair.inputs import encode_labels

    with pytest.raises(ConfigError, match=r"^num_classes is 3 but class_names has 2 names"):
        encode_labels({"train": np.array([0, 1])}, num_classes=3, class_names=["a", "b"])
    with pytest.raises(ConfigError, match=r"^num_classes is 3 but the labels name 2 classes "
                       r"\('no', 'yes'\)"):
        encode_labels({"train": np.array(["no", "yes"])}, num_classes=3)


def test_group_codes_that_are_ids_are_refused_not_expanded():
    """An attribute of ids or amounts (a code of 10⁹) would name 10⁹ + 1 groups: refused,
    naming the codes and the fix, instead of building every name."""
    from kdfair.inputs import encode_groups

    with pytest.raises(ConfigError, match=r"^groups of 'customer' are coded 3, 1000000000: code "
                       r"1000000000 means 1000000001 groups for 3 inputs\. Group codes count "
                       r"0\.\.G−1: give the groups as names \(text\) or group_names\['customer'\]"):
        encode_groups({"test": {"customer": np.array([3, 10**9, -1])}})
    codes, names = encode_groups({"test": {"age": np.array([19, 75, 40])}})  # small: as before
    assert names["age"][-1] == "75" and codes["test"]["age"].tolist() == [19, 75, 40]


def test_text_labels_as_python_objects_fingerprint_by_their_text():
    """Labels from pandas are object arrays, whose bytes are pointers: the study's fingerprint
    (in every run id) must depend on the text only, or a resumed study finds none of its runs."""
    def labels():
        return np.array(["".join(["go", "od"]), "".join(["ba", "d"])] * 3, dtype=object)

    a, b = labels(), labels()
    assert a[0] is not b[0]  # other objects, same text
    assert api._fingerprint(np.zeros(6), a) == api._fingerprint(np.zeros(6), b)
    assert api._fingerprint(np.zeros(6), a) != api._fingerprint(np.zeros(6), a[::-1].copy())


def test_features_with_a_text_column_name_the_split_and_the_fix(tmp_path):
    """German credit's columns include text (purpose: 'car', 'radio/TV'): a DataFrame of them
    is refused naming the split and the fix, not a torch TypeError; numbers held as objects
    are taken as numbers."""
    x, y, groups = credit(96, 0)
    frame = pd.DataFrame(x).assign(purpose=np.where(y == 1, "car", "radio/TV"))
    with pytest.raises(ConfigError, match=r"^train x: features must be numbers \(or uint8 "
                       r"images\), got values of type object: encode text columns as numbers "
                       r"first \(e\.g\. pandas\.get_dummies\)$"):
        api.study("text-x", (frame, y, groups), None, credit(64, 2), mlp, mlp, classes=[1, 2],
                  out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
    xs, _, _ = api._arrays((x.astype(object), y), "train")
    assert xs.dtype == np.float32 and np.array_equal(xs, x)


def test_groups_as_names_in_one_split_and_codes_in_another_are_refused():
    """test: 'female'/'male', val: 0/1 — without names the codes would become groups '0' and
    '1' beside 'female' and 'male' (the validation fairness of other groups): refused."""
    from kdfair.inputs import encode_groups

    with pytest.raises(ConfigError, match=r"^groups of 'sex' are names \(text\) in some parts "
                       r"but codes \(numbers\) in val: give them the same way in every part, or "
                       r"attribute_groups\['sex'\]"):
        encode_groups({"test": {"sex": np.array(["female", "male"])},
                       "val": {"sex": np.array([0, 1])}}, names_param="attribute_groups")
    with pytest.raises(ConfigError, match=r"^groups of 'sex': '0', '1' are not in "
                       r"group_names\['sex'\]"):  # with names: the codes are not among them
        encode_groups({"test": {"sex": np.array(["female", "male"])},
                       "val": {"sex": np.array([0, 1])}}, {"sex": ["female", "male"]})


def test_a_declared_class_without_test_input_is_noted(tmp_path):
    """1/2-coded labels with three class names declared (class 0 empty) are the user's explicit
    choice, so they are analysed, but the store's notes say the class has no test input and how
    to code the labels instead; with every class present, no such note."""
    from kdfair.store.index import open_store

    rng = np.random.default_rng(0)
    y = rng.integers(1, 3, 60)
    preds = [np.where(rng.random(60) < 0.8, y, 3 - y) for _ in range(2)]
    root = audit(y, nds=preds, teacher=preds, class_names=["none", "good", "bad"],
                 groups={"sex": rng.integers(0, 2, 60)}, out=tmp_path, name="declared",
                 write_report=False)
    notes = " ".join(open_store(root).notes)
    assert "1 of 3 declared classes have no test input ('none')" in notes
    assert "give classes=" in notes
    ok = audit(y - 1, nds=[p - 1 for p in preds], teacher=[p - 1 for p in preds],
               out=tmp_path, name="coded", write_report=False)
    assert "declared classes have no test input" not in " ".join(open_store(ok).notes)
