"""Config errors that help: a store of another configuration names the fields that differ
(stored → now); "did you mean" for presets, fields and commands; brackets survive printing."""

import pytest
from typer.testing import CliRunner

from kdfair.cli import app
from kdfair.overrides import differences, flatten
from kdfair.suggest import close_matches, did_you_mean
from tests.toy import TINY_YAML

pytestmark = pytest.mark.usefixtures("one_thread")


def _text(res) -> str:
    return " ".join(res.output.split())


def test_differences_list_every_changed_field_as_yaml():
    old = {"name": "a", "distill": {"alpha": 0.8, "temperatures": [4]}, "seeds": [0, 1]}
    new = {"name": "a", "distill": {"alpha": 0.5, "temperatures": [4]}, "seeds": [0, 1],
           "tracking": "tensorboard"}
    assert differences(old, new) == [("distill.alpha", "0.8", "0.5"),
                                     ("tracking", "unset", "tensorboard")]
    assert flatten({"a": {"b": {"c": 1}, "d": {}}}) == {"a.b.c": 1, "a.d": {}}


def test_a_store_of_another_configuration_names_the_fields_that_differ(tmp_path):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(TINY_YAML)
    out = str(tmp_path / "out")
    first = CliRunner().invoke(app, ["run", str(exp), "--out", out, "--no-report"])
    assert first.exit_code == 0, first.output
    res = CliRunner().invoke(app, ["run", str(exp), "--out", out, "--no-report", "--set",
                                   "distill.temperatures=[2]", "--set", "distill.alpha=0.5"])
    assert res.exit_code == 1
    assert "holds 2 finished run(s) from a different configuration of this experiment" in \
        _text(res)
    assert "other settings (2 listed below)" in _text(res)
    assert "new directory (--out), or move the old one aside" in _text(res)
    lines = [line.strip() for line in res.output.splitlines()]
    i = lines.index("These settings differ (stored → now):")
    assert lines[i + 1: i + 3] == ["distill.alpha: 0.8 → 0.5",  # in experiment.json's order
                                   "distill.temperatures: [4.0] → [2.0]"]  # brackets kept


def test_did_you_mean_for_presets_fields_and_commands(tmp_path):
    res = CliRunner().invoke(app, ["run", "dem0", "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert "no experiment file 'dem0' and no preset of that name (did you mean 'demo'?)" in \
        _text(res)
    res = CliRunner().invoke(app, ["run", "demo", "--out", str(tmp_path), "--set",
                                   "learning_rate=0.01"])
    assert res.exit_code == 1
    assert ("learning_rate: unknown field; allowed: name, dataset, teacher, student, distill"
            in _text(res))
    assert "did you mean 'teacher.train.lr' or 'student.train.lr'?" in _text(res)
    res = CliRunner().invoke(app, ["run", "demo", "--out", str(tmp_path), "--set",
                                   "distill.alfa=0.5"])
    assert "distill.alfa: unknown field" in _text(res)
    assert "did you mean 'distill.alpha'?" in _text(res)
    res = CliRunner().invoke(app, ["stauts", str(tmp_path)])
    assert res.exit_code == 2 and "No such command 'stauts'. Did you mean 'status'?" in \
        _text(res)
    assert not any(tmp_path.iterdir())


def test_close_matches_prefer_the_path_given_then_synonyms_then_spelling():
    paths = ["teacher.train.lr", "student.train.lr", "teacher.train.epochs", "seeds",
             "distill.alpha", "distill.temperatures"]
    assert close_matches("teacher.train.learning_rate", paths) == ["teacher.train.lr"]
    assert close_matches("learning_rate", paths) == ["teacher.train.lr", "student.train.lr"]
    assert close_matches("teacher.train.epoch", paths) == ["teacher.train.epochs"]
    assert close_matches("sedes", paths) == ["seeds"]
    assert close_matches("analysis.foo", paths) == []
    assert did_you_mean("trifeature_paper", ["trifeature-paper", "trifeature-cpu"]) == \
        " (did you mean 'trifeature-paper'?)"
    assert did_you_mean("zzz", ["demo"]) == ""
