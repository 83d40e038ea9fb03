"""Executors without a cluster: SLURM settings, splitting bundles into jobs, the local worker pool,
and the errors a user meets before anything is submitted."""

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from kdfair.cli import app
from kdfair.config import experiment_from_dict, load_experiment, parse_minutes
from kdfair.errors import ConfigError
from kdfair.executors import (
    LocalPoolExecutor,
    SlurmError,
    SlurmExecutor,
    execute,
    slurm_config,
    split_bundles,
    split_evenly,
)
from kdfair.store.arrays import load_predictions

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "size": 16},
    "teacher": {"model": {"arch": "resnet8"}, "train": {"epochs": 1, "batch_size": 64}},
    "student": {"model": {"arch": "lenet5"}, "train": {"epochs": 1, "batch_size": 64}},
    "distill": {"temperatures": [2, 4]},
    "seeds": [0, 1],
    "device": "cpu",
}

YAML = """
name: tiny
dataset: {name: digits, size: 16}
teacher: {model: {arch: resnet8}, train: {epochs: 1, batch_size: 64}}
student: {model: {arch: lenet5}, train: {epochs: 1, batch_size: 64}}
distill: {temperatures: [2, 4]}
seeds: [0, 1]
device: cpu
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("text,minutes", [
    (90, 90), ("90", 90), ("1:30:00", 90), ("30:00", 30), ("30:01", 31),
    ("2-00:00:00", 2880), ("1-02", 1560), ("infinite", 0),
])
def test_slurm_times_parse_to_minutes(text, minutes):
    assert parse_minutes(text) == minutes


def test_the_slurm_section_and_the_gpus_a_job_asks_for():
    section = {"partition": "gpu", "time": "4:00:00", "options": {"qos": "low"}, "cpus": 4}
    cfg = slurm_config(section)
    assert cfg.partition == "gpu" and cfg.time == 240 and cfg.cpus == 4
    assert cfg.options == {"qos": "low"}
    exp = experiment_from_dict(TINY)
    assert cfg.gpus_for(exp) == 0  # a CPU study asks for no GPU
    assert cfg.gpus_for(exp.model_copy(update={"device": "auto"})) == 1
    assert slurm_config({"gpus": 2}).gpus_for(exp) == 2


@pytest.mark.parametrize("section,message", [
    ({"partiton": "gpu"}, r"slurm.partiton: unknown field; allowed: partition"),
    ({"time": "soon"}, r"slurm.time: not a SLURM time: 'soon'"),
    ({"gpus": -1}, r"slurm.gpus"),
    ({"options": {"array": "0-3"}}, r"set by kdfair itself"),
])
def test_bad_slurm_settings_name_the_field(section, message):
    with pytest.raises(ConfigError, match=message):
        slurm_config(section)


def test_experiment_file_with_a_slurm_section(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text(YAML + "slurm: {partition: gpu, time: 30, runs_per_job: 4}\n")
    exp = load_experiment(p)
    assert exp.name == "tiny" and slurm_config(exp.slurm).runs_per_job == 4
    p.write_text(YAML)
    assert load_experiment(p).slurm is None
    p.write_text(YAML + "slurm: gpu\n")
    with pytest.raises(ConfigError, match="slurm"):
        load_experiment(p)


def test_bundles_split_into_jobs_keep_a_seeds_runs_together():
    seed = {"nds-s0": 0, "nds-s1": 1, "ds-T2-s0": 0, "ds-T2-s1": 1, "ds-T4-s0": 0, "ds-T4-s1": 1}
    bundle = list(seed)
    assert split_bundles([bundle], None) == [bundle]
    jobs = split_bundles([bundle], 3, seed.get)
    assert jobs == [["nds-s0", "ds-T2-s0", "ds-T4-s0"], ["nds-s1", "ds-T2-s1", "ds-T4-s1"]]
    assert [len(j) for j in split_bundles([bundle], 4, seed.get)] == [4, 2]
    assert len(split_evenly([bundle], 4, seed.get)) == 3  # ⌈6 / 4⌉ = 2 runs per worker
    assert split_evenly([bundle], 1, seed.get) == [bundle]


def _logits(root):
    return {p.name: load_predictions(p)["logits"] for p in (root / "runs").iterdir()}


class _SameSplitInProcess:
    """The reference: the pool's split of each phase, trained chunk by chunk in this process."""

    def __init__(self, parts):
        self.parts = parts

    def start(self, exp, out):
        pass

    def run_phase(self, exp, out, bundles, data, data_root):
        from kdfair.runner import train_runs

        for chunk in split_evenly(bundles, self.parts, lambda s: s.seed):
            train_runs(exp, out, chunk, data=data)


@pytest.mark.slow
def test_worker_pool_trains_every_run_as_this_process_would(tmp_path):
    exp = experiment_from_dict(TINY)
    events = []
    ref = execute(exp, tmp_path / "ref", executor=_SameSplitInProcess(2))
    pool = execute(exp, tmp_path / "pool", executor=LocalPoolExecutor(
        ["cpu", "cpu"], on_run=lambda spec, state: events.append((spec.run_id, state)),
        threads=1))
    assert len(pool.done) == 8 and not pool.failed and not pool.missing
    assert sorted(events) == sorted((r, "done") for r in pool.done)  # relayed from the workers
    a, b = _logits(tmp_path / "ref"), _logits(tmp_path / "pool")
    assert sorted(a) == sorted(b) == sorted(ref.done)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_engine_workers_choose_a_cpu_pool(monkeypatch):
    from kdfair import config
    from kdfair.executors import LocalExecutor, local_executor

    one = experiment_from_dict({**TINY, "engine": {"workers": 1}})
    assert isinstance(local_executor(one), LocalExecutor)  # this process
    two = experiment_from_dict({**TINY, "engine": {"workers": 2}})
    pool = local_executor(two)
    assert isinstance(pool, LocalPoolExecutor)
    assert (pool.devices, pool.threads) == (["cpu", "cpu"], 1 if config.available_cores() <= 2
                                            else config.available_cores() // 2)
    monkeypatch.setattr(config, "available_cores", lambda: 4)
    per_core = local_executor(experiment_from_dict({**TINY, "engine": {"workers": 0}}))
    assert (per_core.devices, per_core.threads) == (["cpu"] * 4, 1)
    default = local_executor(experiment_from_dict(TINY))  # one process per core, one thread
    assert (default.devices, default.threads) == (["cpu"] * 4, 1)
    monkeypatch.setattr(config, "available_cores", lambda: 1)
    assert isinstance(local_executor(experiment_from_dict(TINY)), LocalExecutor)


@pytest.mark.slow
def test_a_study_on_cpu_workers_equals_the_study_in_this_process(tmp_path):
    """engine.workers: 2 splits each phase over two processes; every run is the run this
    process trains (one thread each), and the study's status is complete."""
    from kdfair import api

    one = {**TINY, "engine": {"threads": 1}}
    two = {**TINY, "engine": {"threads": 1, "workers": 2}}
    a = api.run(experiment_from_dict(one), out=tmp_path / "one", write_report=False)
    b = api.run(experiment_from_dict(two), out=tmp_path / "two", write_report=False)
    assert a.complete and b.complete and sorted(a.done) == sorted(b.done)
    la, lb = _logits(tmp_path / "one" / "tiny"), _logits(tmp_path / "two" / "tiny")
    assert sorted(la) == sorted(lb) and all(np.array_equal(la[k], lb[k]) for k in la)


@pytest.mark.slow
def test_the_pool_starts_no_more_processes_than_a_phase_has_chunks(tmp_path, monkeypatch):
    """engine.workers: 64 forks one process per chunk of each phase (a fork starts every
    process of the pool at once): 2 for the two teachers, 6 for the six student runs."""
    from kdfair import api
    from kdfair.executors import local

    sizes = []
    real = local.ProcessPoolExecutor

    def recording(max_workers, **kw):
        sizes.append(max_workers)
        return real(max_workers, **kw)

    monkeypatch.setattr(local, "ProcessPoolExecutor", recording)
    exp = experiment_from_dict({**TINY, "engine": {"threads": 1, "workers": 64}})
    st = api.run(exp, out=tmp_path, write_report=False)
    assert st.complete and sizes == [2, 6]


def test_slurm_needs_the_slurm_commands(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SlurmError, match="sinfo not found: `executor` slurm needs.*login node"):
        SlurmExecutor(slurm_config()).start(experiment_from_dict(TINY), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_slurm_refuses_data_registered_in_this_process(tmp_path):
    from kdfair.data.registry import register_dataset

    register_dataset("custom-here", lambda cfg, cache: None)
    exp = experiment_from_dict({**TINY, "dataset": {"name": "custom-here"}})
    with pytest.raises(SlurmError, match="registered in this Python process"):
        SlurmExecutor(slurm_config()).start(exp, tmp_path / "out")


def test_cli_slurm_flags_need_the_slurm_executor(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text(YAML)
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(p), "--out", str(tmp_path), "--slurm-partition", "x"])
    assert res.exit_code == 1 and "--slurm-partition only apply with --executor slurm" in (
        res.output)
    res = runner.invoke(app, ["run", str(p), "--out", str(tmp_path), "--executor", "pbs"])
    assert res.exit_code == 1 and "choose one of local, slurm" in res.output
    assert not (tmp_path / "tiny").exists()
    env_path = os.environ.get("PATH", "")
    assert env_path  # the CLI left the environment alone


# --- data sets and models registered at run time, on every path of the local executors --------


def tiny_model(num_classes, input_shape, members=1):
    """A module-level factory: picklable, so spawned workers can build it."""
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), num_classes))


def _registered(name, arch):
    """A data set of float features registered in this process, and an experiment on it."""
    from kdfair.api import _part
    from kdfair.data.base import SplitData
    from kdfair.data.registry import register_dataset

    def split(n, seed):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 4)).astype(np.float32)
        return x, (x[:, 0] > 0).astype(int), {"grp": rng.integers(0, 2, n)}

    parts = {k: _part(*split(n, i)) for i, (k, n) in enumerate((("train", 64), ("val", 16),
                                                                  ("test", 32)))}
    data = SplitData(name=name, num_classes=2, class_names=["a", "b"], fingerprint=name,
                     attribute_groups={"grp": ["0", "1"]}, mean=(0.0,), std=(1.0,), **parts)
    register_dataset(name, lambda cfg, cache: data)
    train = {"epochs": 1, "batch_size": 32, "augment": "none"}
    return {"name": name, "dataset": {"name": name}, "device": "cpu", "seeds": [0, 1],
            "teacher": {"model": {"arch": arch}, "train": train},
            "student": {"model": {"arch": arch}, "train": train},
            "distill": {"temperatures": [2]}, "engine": {"threads": 1}}


def _pool(start_method):
    return LocalPoolExecutor(["cpu", "cpu"], threads=1, start_method=start_method)


def test_a_registered_data_set_and_model_train_in_process_and_in_forked_workers(tmp_path):
    from kdfair import api
    from kdfair.models.registry import register_model

    register_model("registered-tiny", tiny_model)
    exp = _registered("registered-fork", "registered-tiny")
    here = api.run(exp, out=tmp_path / "here", progress=False, write_report=False)
    forked = api.run(exp, out=tmp_path / "fork", executor=_pool("fork"), write_report=False)
    assert here.complete and forked.complete and len(forked.done) == 6
    a, b = _logits(tmp_path / "here" / exp["name"]), _logits(tmp_path / "fork" / exp["name"])
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_registrations_reach_spawned_workers(tmp_path):
    """Spawned workers import kdfair afresh: the registered data and factory are sent along."""
    from kdfair import api
    from kdfair.models.registry import register_model

    register_model("registered-tiny", tiny_model)
    exp = _registered("registered-spawn", "registered-tiny")
    here = api.run(exp, out=tmp_path / "here", progress=False, write_report=False)
    spawned = api.run(exp, out=tmp_path / "spawn", executor=_pool("spawn"), write_report=False)
    assert spawned.complete and sorted(spawned.done) == sorted(here.done)
    a, b = _logits(tmp_path / "here" / exp["name"]), _logits(tmp_path / "spawn" / exp["name"])
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_model_spawned_workers_cannot_build_is_refused_naming_the_fix(tmp_path):
    from kdfair import api
    from kdfair.models.registry import register_model

    register_model("registered-lambda", lambda num_classes, input_shape, members=1:
                   tiny_model(num_classes, input_shape))
    exp = _registered("registered-refused", "registered-lambda")
    with pytest.raises(ConfigError) as err:
        api.run(exp, out=tmp_path, executor=_pool("spawn"), write_report=False)
    text = str(err.value)
    assert "model 'registered-lambda', registered in this Python process" in text
    assert "cannot be sent to worker processes started by spawn" in text
    assert "module-level function or class" in text and "engine.workers: 1" in text
    assert not (tmp_path / exp["name"]).exists()  # refused before the store was touched
    forked = api.run(exp, out=tmp_path, executor=_pool("fork"), write_report=False)
    assert forked.complete  # a forked worker inherits it


def test_kdfair_study_models_pickle_when_the_callers_function_does():
    import pickle

    from kdfair.api import _UserModel

    model = pickle.loads(pickle.dumps(_UserModel(tiny_model, "custom-x-teacher")))
    assert model(3, (4,)).__class__.__name__ == "Sequential"
    with pytest.raises(ConfigError, match="one member at a time"):
        model(3, (4,), members=2)


def test_workers_receive_the_validated_experiment(tmp_path, monkeypatch):
    """Nothing validates the experiment again on its way to a worker."""
    from kdfair import api, config
    from kdfair.models.registry import register_model

    register_model("registered-tiny", tiny_model)
    exp = api.load_experiment(_registered("registered-once", "registered-tiny"))
    monkeypatch.setattr(config.Experiment, "model_validate", None)  # any validation fails
    assert api.run(exp, out=tmp_path, executor=_pool("fork"), write_report=False).complete
