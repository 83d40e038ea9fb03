"""Errors from the Python API name its parameters, not the command line's flags or the
experiment file; the command line keeps its own wording — each layer words what it knows, no
message is rewritten."""

import errno

import numpy as np
import pytest
from typer.testing import CliRunner

from kdfair import api
from kdfair.cli import app, flag_for
from kdfair.errors import SETTING, ConfigError, StoreError, os_error
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


def test_a_setting_is_named_by_the_layer_that_knows_the_users_words(tmp_path, monkeypatch):
    """An error carries the setting that fixes it; Python names it as itself, the command line
    as its flag (no message is rewritten)."""
    err = StoreError(f"{tmp_path} is taken: write to a new directory ({SETTING})", setting="out")
    assert str(err).endswith("write to a new directory (`out`)")
    assert err.worded(flag_for).endswith("write to a new directory (--out)")
    assert flag_for("slurm.partition") == "--slurm-partition"
    assert flag_for("engine.workers") == "--set engine.workers=…"
    full = os_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path)))
    assert "give another `out`" in str(full) and "give another --out" in full.worded(flag_for)

    def refuse(*args, **kwargs):
        raise err

    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    monkeypatch.setattr(api, "run", refuse)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "write to a new directory (--out)" in res.output


def test_a_stale_store_on_the_command_line_names_out(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    _stale_store(tmp_path / "out")
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "Write to a new directory (--out)" in res.output


def test_a_stale_store_in_python_names_no_flag(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    _stale_store(tmp_path / "out")
    with pytest.raises(StoreError) as err:
        api.run(path, out=tmp_path / "out", progress=False)
    text = str(err.value)
    assert "Write to a new directory (`out`)" in text and "--out" not in text


# --- the settings that fix an error, named by each layer ---------------------------------------


def test_missing_data_names_data_root_in_python_and_data_root_flag_on_the_command_line(tmp_path):
    from kdfair.errors import DatasetError

    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT.replace("name: digits, size: 16", "name: cifar10"))
    with pytest.raises(DatasetError) as err:
        api.run(path, out=tmp_path / "out", data_root=tmp_path / "data", progress=False)
    text = str(err.value)
    assert "the data root is `data_root` if given" in text and "--data-root" not in text
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"),
                                   "--data-root", str(tmp_path / "data")])
    assert res.exit_code == 1 and "the data root is --data-root if given" in res.output
    assert "`data_root`" not in res.output


@pytest.fixture
def one_partition(monkeypatch):
    """A cluster, as sinfo would list it, with one partition (the default): no cluster needed."""
    from kdfair.executors import slurm
    from kdfair.executors.slurm_queue import Partition

    monkeypatch.setattr(slurm, "partitions",
                        lambda: {"cpu": Partition("cpu", True, True, 60, "")})


def test_an_unknown_partition_names_slurm_partition_in_python_and_its_flag_on_the_command_line(
        tmp_path, one_partition):
    from kdfair.executors import SlurmError

    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT + "slurm: {partition: nope}\n")
    with pytest.raises(SlurmError) as err:
        api.run(path, out=tmp_path / "out", executor="slurm", progress=False)
    text = str(err.value)
    assert "unknown SLURM partition 'nope'" in text and "cpu (default)" in text
    assert "Fix `slurm.partition`;" in text and "--slurm-partition" not in text
    path.write_text(EXPERIMENT)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"),
                                   "--executor", "slurm", "--slurm-partition", "nope"])
    assert res.exit_code == 1 and "Fix --slurm-partition;" in res.output, res.output
    assert "`slurm.partition`" not in res.output
    assert not (tmp_path / "out").exists()  # nothing written, nothing submitted


def test_a_time_limit_over_the_partitions_names_slurm_time(tmp_path, one_partition):
    from kdfair.executors import SlurmError

    exp = api.load_experiment({**_experiment(), "slurm": {"time": 90}})
    with pytest.raises(SlurmError) as err:
        api.make_executor("slurm", exp, tmp_path)
    assert "lower `slurm.time`" in str(err.value)
    assert "lower --slurm-time" in err.value.worded(flag_for)


def test_a_study_locked_without_waiting_names_wait(tmp_path):
    import threading

    from kdfair.store import StudyLocked, study_lock

    held, release = threading.Event(), threading.Event()

    def hold():
        with study_lock(tmp_path):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(StudyLocked) as err, study_lock(tmp_path, wait=False):
            pass
    finally:
        release.set()
        holder.join()
    assert "run again with `wait` left out" in str(err.value)
    assert "run again with --no-wait left out" in err.value.worded(flag_for)


def _experiment():
    import yaml

    return yaml.safe_load(EXPERIMENT)


@pytest.mark.parametrize("split, message", [
    (lambda x, y: (x,), r"^train: give \(x, y\) or \(x, y, \{attribute: groups\}\)$"),
    (lambda x, y: (x, y, [0] * len(y)), r"^train: the third item is \{attribute: group of each "
     r"input\}, got list$"),
    (lambda x, y: (x[:10], y), r"^train x: 10 rows for 16 train labels \(y\): give one row per "
     r"input"),
    (lambda x, y: (x, y.astype(float) + 0.5), r"^train: expected class indices \(integers\) or "
     r"class names \(text\), got values of type float64$"),
])
def test_study_inputs_name_the_split_and_the_fix(tmp_path, split, message):
    rng = np.random.default_rng(0)
    x, y = _split(16, rng)
    with pytest.raises(ConfigError, match=message):
        api.study("bad", split(x, y), _split(8, rng), _split(8, rng), "lenet5", "lenet5",
                  out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_study_text_labels_are_class_names_in_sorted_order(tmp_path):
    """Labels given as text work like the audit's class names (no int() of 'male')."""
    from kdfair.inputs import encode_labels

    codes, names = encode_labels({"train": np.array(["no", "yes", "no"]),
                                  "test": np.array(["yes", "no"])})
    assert names == ["no", "yes"]
    assert codes["train"].tolist() == [0, 1, 0] and codes["test"].tolist() == [1, 0]
    with pytest.raises(ConfigError, match=r"^test: class names \['maybe'\] are not in "
                       r"class_names \('no', 'yes'\)"):
        encode_labels({"train": np.array(["no", "yes"]), "test": np.array(["maybe", "no"])},
                      class_names=["no", "yes"])
