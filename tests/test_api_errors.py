"""Errors from the Python API name its parameters, not the command line's flags or the
experiment file; the command line keeps its own wording."""

import numpy as np
import pytest
from typer.testing import CliRunner

from kdfair import api
from kdfair.cli import app
from kdfair.errors import ConfigError, StoreError
from tests.test_overrides import EXPERIMENT


def _split(n, rng):
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 2, n)


def test_study_errors_name_its_parameters(tmp_path):
    rng = np.random.default_rng(0)
    parts = _split(16, rng), _split(8, rng), _split(8, rng)
    with pytest.raises(ConfigError) as err:
        api.study("bad", *parts, "lenet5", "lenet5", teacher_train={"lr": -1},
                  temperatures=[2, -1], out=tmp_path, progress=False)
    text = str(err.value)
    assert text.startswith("invalid arguments of kdfair.study('bad', …):")
    assert "teacher_train.lr: must be a number greater than 0, got -1" in text
    assert "temperatures: temperatures must be > 0" in text
    assert "teacher.train" not in text and "experiment file" not in text


def _stale_store(root, name="tiny-set"):
    """A results directory holding one valid finished run of another configuration."""
    from kdfair.spec import RunSpec
    from kdfair.store import ResultsDir

    store = ResultsDir(root / name)
    store.init({"name": name})
    spec = RunSpec(experiment=name, role="nds", arch="lenet5", seed=9, train={}, dataset={},
                   data_fingerprint="another")
    store.save_run(spec, {"test_acc": 0.5}, np.zeros((2, 2), np.float32), np.zeros(2, int),
                   np.arange(2))


def test_run_names_out_in_python_and_on_the_command_line(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    _stale_store(tmp_path / "out")
    with pytest.raises(StoreError) as err:
        api.run(path, out=tmp_path / "out", progress=False)
    text = str(err.value)
    assert "the `out` argument" in text and "--out" not in text
    assert "experiment file" not in text
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "(--out)" in res.output
