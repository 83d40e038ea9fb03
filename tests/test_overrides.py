"""`--set DOTTED.PATH=VALUE` and `load_experiment(path, overrides=…)`: one field changes, the
store records the effective experiment, and a wrong path or value gives one message naming it."""

import json

import pytest
from typer.testing import CliRunner

from kdfair import api
from kdfair.cli import app
from kdfair.errors import ConfigError
from kdfair.overrides import Override, apply_overrides, describe, parse_override

EXPERIMENT = """
name: tiny-set
dataset: {name: digits, size: 16}
teacher:
  model: {arch: lenet5}
  train: {epochs: 1, batch_size: 256, augment: none}
student:
  model: {arch: lenet5}
  train: {epochs: 1, batch_size: 256, augment: none}
distill: {temperatures: [2]}
seeds: [0, 1]
device: cpu
analysis: {tests: false}
"""


@pytest.mark.parametrize("text, keys, value", [
    ("distill.alpha=0.5", ["distill", "alpha"], 0.5),
    ("seeds=[0,1,2]", ["seeds"], [0, 1, 2]),
    ("device=cpu", ["device"], "cpu"),
    ("engine.grouped=false", ["engine", "grouped"], False),
    ("teacher.train.lr=1e-3", ["teacher", "train", "lr"], 1e-3),  # YAML 1.1 reads this as str
    ("dataset.root=", ["dataset", "root"], None),
])
def test_values_are_parsed_as_yaml(text, keys, value):
    got_keys, got = parse_override(text)
    assert got_keys == keys
    assert got == (value if text != "teacher.train.lr=1e-3" else "1e-3")


def test_apply_changes_only_the_named_field_and_creates_sections():
    data = {"distill": {"alpha": 0.8, "temperatures": [1]}, "slurm": None}
    out = apply_overrides(data, ["distill.alpha=0.5", "slurm.partition=gpu"])
    assert out == {"distill": {"alpha": 0.5, "temperatures": [1]}, "slurm": {"partition": "gpu"}}
    assert data["distill"]["alpha"] == 0.8  # the input is not modified
    assert apply_overrides(data, {"distill.alpha": 0.1})["distill"]["alpha"] == 0.1


@pytest.mark.parametrize("bad, message", [
    ("distill.alpha", "--set 'distill.alpha': expected DOTTED.PATH=VALUE"),
    ("=3", "expected DOTTED.PATH=VALUE"),
    ("distill..alpha=1", "--set distill..alpha: '' is not a field name"),
    ("distill.alpha=[1", "--set distill.alpha: the value '[1' is not valid YAML"),
    ("seeds.first=1", "--set seeds.first: seeds is a list ([0, 1]), not a section"),
])
def test_malformed_overrides_name_the_path(bad, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides({"seeds": [0, 1]}, [bad], label="--set")  # the command line's word
    assert message in str(err.value)
    with pytest.raises(ConfigError) as err:
        apply_overrides({"seeds": [0, 1]}, [bad])  # Python's: no flag
    assert message.replace("--set", "overrides") in str(err.value)


def test_load_experiment_with_overrides_validates_like_the_file(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    exp = api.load_experiment(path, overrides=["distill.alpha=0.5", "seeds=[3,4,5]"])
    assert exp.distill.alpha == 0.5 and exp.seeds == (3, 4, 5)
    assert exp.distill.temperatures == (2.0,)  # the rest as in the file
    with pytest.raises(ConfigError) as err:
        api.load_experiment(path, overrides={"distill.alpha": 1.5})
    text = str(err.value)
    assert "with overrides distill.alpha=1.5" in text
    assert "distill.alpha: alpha must lie in [0, 1]" in text
    with pytest.raises(ConfigError, match=r"distill\.alpah: unknown field; allowed: "
                                          r"temperatures, alpha"):
        api.load_experiment(path, overrides=["distill.alpah=0.5"])


def test_describe_reads_back_as_given():
    given = describe(["a.b=0.5", "seeds=[0, 1]"], label="--set")
    assert given == "--set a.b=0.5 --set seeds=[0, 1]"
    assert describe({"a.b": 0.5}) == "overrides a.b=0.5"
    assert describe([Override(("device",), "cpu", "--device cpu")]) == "--device cpu"


def test_cli_wrong_path_or_value_is_one_message(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    runner = CliRunner()
    for flag, expected in (("distill.alpah=0.5", "distill.alpah: unknown field"),
                           ("distill.alpha=abc", "distill.alpha: Input should be a valid number"),
                           ("seeds=[]", "seeds: give at least one seed")):
        res = runner.invoke(app, ["run", str(path), "--set", flag, "--out", str(tmp_path)])
        assert res.exit_code == 1, res.output
        assert expected in res.output and f"--set {flag.split('=')[0]}" in res.output
        assert "Traceback" not in res.output
        assert not (tmp_path / "tiny-set").exists()  # nothing written


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_cli_set_changes_one_field_and_the_store_records_it(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"),
                                   "--set", "distill.alpha=0.5", "--set", "seeds=[0]",
                                   "--no-report"])
    assert res.exit_code == 0, res.output
    root = tmp_path / "out" / "tiny-set"
    recorded = json.loads((root / "experiment.json").read_text())
    assert recorded["distill"]["alpha"] == 0.5 and recorded["seeds"] == [0]
    expected = api.load_experiment(path).model_dump(mode="json")
    expected["distill"]["alpha"], expected["seeds"] = 0.5, [0]
    assert recorded == expected  # nothing else changed
    ds = [p for p in (root / "runs").iterdir() if p.name.startswith("ds-")]
    assert len(ds) == 1
    assert json.loads((ds[0] / "spec.json").read_text())["alpha"] == 0.5
