import subprocess
import sys

import pytest

import kdfair.data.registry  # noqa: F401 - the registries add their name checks to config
import kdfair.models.registry  # noqa: F401
from kdfair.config import experiment_from_dict, load_experiment
from kdfair.errors import ConfigError

BASE = {
    "name": "x",
    "dataset": {"name": "digits"},
    "teacher": {"model": {"arch": "resnet8"}},
    "student": {"model": {"arch": "lenet5"}},
    "seeds": [0, 1],
}


def _with(path, value):
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    keys = path.split(".")
    cur = d
    for k in keys[:-1]:
        cur[k] = dict(cur.get(k, {}))
        cur = cur[k]
    cur[keys[-1]] = value
    return d


def test_defaults_follow_the_paper():
    exp = experiment_from_dict(BASE)
    assert exp.distill.alpha == 0.8 and exp.distill.t2_scaling
    assert exp.distill.teacher_policy == "paired"
    assert exp.analysis.significance == 0.05


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("dataset.name", "mnist", r"dataset.name: unknown dataset 'mnist'; allowed: .*trifeature"),
        ("student.model.arch", "vgg", r"student.model.arch: unknown architecture 'vgg'"),
        ("distill.temperatures", [1, 0], r"distill.temperatures: temperatures must be > 0"),
        ("distill.temperatures", [], r"at least one temperature"),
        ("distill.alpha", 1.5, r"distill.alpha: alpha must lie in \[0, 1\]"),
        ("distill.teacher_policy", "random",
         r"distill.teacher_policy: must be one of paired, single, got 'random'"),
        ("seeds", [], r"seeds: .*at least one seed"),
        ("seeds", [3], r"at least 2 seeds.*analysis.tests: false"),
        ("teacher.train.optimizer", "lbfgs",
         r"teacher.train.optimizer: must be one of sgd, adam, adamw, got 'lbfgs'"),
        ("teacher.train.epochs", 0,
         r"teacher.train.epochs: must be an integer greater than or equal to 1, got 0"),
        ("teacher.train.lr_typo", 0.1,
         r"teacher.train.lr_typo: unknown field; allowed: optimizer, lr, "),
    ],
)
def test_invalid_values_name_the_field_and_the_allowed_values(path, value, message):
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(_with(path, value))


def test_one_seed_is_fine_without_tests():
    d = _with("seeds", [0])
    d["analysis"] = {"tests": False}
    assert experiment_from_dict(d).seeds == (0,)


def test_yaml_file_and_errors(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("name: x\ndataset: {name: digits}\nteacher: {model: {arch: resnet8}}\n"
                 "student: {model: {arch: lenet5}}\nseeds: [0, 1]\n")
    assert load_experiment(p).name == "x"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(p)
    p.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError):  # safe_load refuses to construct Python objects
        load_experiment(p)
    with pytest.raises(ConfigError, match="no experiment file 'nope.yaml'.*kdfair presets"):
        load_experiment("nope.yaml")


def test_config_loads_no_registry():
    """Data set and model names are checked by the registries, which add their checks."""
    code = ("import sys; from kdfair.config import experiment_from_dict as f; "
            f"f({BASE!r}); print(sorted(m for m in sys.modules "
            "if m.startswith(('kdfair.data', 'kdfair.models', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_way_in_takes_a_file_a_mapping_or_an_experiment_and_overrides(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("name: x\ndataset: {name: digits}\nteacher: {model: {arch: resnet8}}\n"
                 "student: {model: {arch: lenet5}}\nseeds: [0, 1]\n")
    exp = load_experiment(p, ["distill.alpha=0.5"])
    assert exp.distill.alpha == 0.5
    assert load_experiment(BASE, {"distill.alpha": 0.5}) == exp
    assert load_experiment(exp) is exp  # nothing to apply: validated once, not again
    assert load_experiment(exp, {"seeds": [4, 5]}).seeds == (4, 5)
    with pytest.raises(ConfigError, match=r"invalid experiment 'x' with overrides seeds=\[\]"):
        load_experiment(exp, {"seeds": []})
