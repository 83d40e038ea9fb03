"""`kdfair plan`, `kdfair run --dry-run` and `kdfair.plan`: the resolved experiment, its runs per
role (done / to train) and a time estimate from a few timed training steps — nothing written."""

import time

import pytest
import yaml
from typer.testing import CliRunner

from kdfair import api
from kdfair.cli import app
from kdfair.config import experiment_from_dict
from kdfair.planning import Probe, _FewSteps, chunked, report_seconds
from kdfair.progress import phase_seconds

EXPERIMENT = """
name: tiny-plan
dataset: {name: digits, size: 16}
teacher:
  model: {arch: resnet8}
  train: {epochs: 3, batch_size: 64, augment: crop}
student:
  model: {arch: lenet5}
  train: {optimizer: adam, lr: 0.003, weight_decay: 0.0, epochs: 2, batch_size: 64,
          augment: none}
distill: {temperatures: [2, 8]}
seeds: [0, 1]
device: cpu
engine: {threads: 1, workers: 1}
"""

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny-plan.yaml"
    path.write_text(EXPERIMENT)
    return path


def test_the_plan_lists_runs_per_role_and_estimates_each_from_timed_steps(tiny, tmp_path):
    p = api.plan(tiny, tmp_path / "out")
    assert len(p.specs) == 8 and not p.done and p.problem is None
    rows = [(r.role, r.total, r.done, r.to_train) for r in p.roles()]
    assert rows == [("teacher", 2, 0, 2), ("NDS", 2, 0, 2), ("DS T=2", 2, 0, 2),
                    ("DS T=8", 2, 0, 2)]
    e = p.estimate
    assert set(e.per_run) == {s.run_id for s in p.specs}
    assert e.workers == 1 and e.threads == 1 and e.device == "cpu"
    # the resnet8 teacher (3 epochs, augmented) costs more than a lenet5 NDS (2 epochs)
    by_role = {r.role: r.seconds_per_run for r in p.roles()}
    assert by_role["teacher"] > by_role["NDS"] > 0
    # one worker: the runs one after another; then the report
    assert e.train_s == pytest.approx(sum(e.per_run.values()))
    from kdfair.runner import load_data

    assert e.report_s == pytest.approx(report_seconds(8, len(load_data(p.experiment).test)))
    assert e.total_s == pytest.approx(e.train_s + e.report_s)
    # the YAML is the experiment as it will run
    assert experiment_from_dict(yaml.safe_load(p.yaml())) == p.experiment
    assert not (tmp_path / "out").exists()  # nothing written
    schedule = p.schedule()
    assert schedule.cost == e.per_run and schedule.workers == 1
    assert [len(c) for phase in schedule.phases for c in phase] == [2, 6]


def test_a_run_costs_its_setup_epochs_of_steps_and_validation_and_its_evaluation():
    probe = Probe(setup_s=1.0, step_s=0.1, val_s=0.5, after_s=2.0, forward_s_per_input=0.0,
                  steps_per_epoch=10)
    spec = type("Spec", (), {"train": {"epochs": 3}})()
    assert probe.run_seconds(spec) == pytest.approx(1.0 + 3 * (10 * 0.1 + 0.5) + 2.0)


def test_the_probe_times_the_steps_after_its_warmup():
    class Part:
        def epoch(self, cfg, seeds, epoch):
            yield from range(100)

    few = _FewSteps(Part(), warmup=2, steps=3)
    seen = []
    for step in few.epoch(None, [0], 0):
        time.sleep(0.2 if step < 2 else 0.05)  # warm-up steps are slow, the rest take 50 ms
        seen.append(step)
    assert seen == [0, 1, 2, 3, 4]
    assert few.step_seconds() == pytest.approx(0.05, abs=0.03)


def test_the_report_estimate_grows_with_runs_and_the_test_set():
    assert report_seconds(21, 600) == pytest.approx(6.0 + 1.5 * 21)
    assert report_seconds(8, 600) < report_seconds(21, 600) < report_seconds(21, 2400)


def test_chunks_are_the_local_executors_split_over_its_workers():
    from kdfair.config import load_experiment
    from kdfair.executors.split import split_evenly
    from kdfair.runner import bundles, plan

    specs = plan(load_experiment("demo"), "fp")
    chunks = chunked(specs, set(), workers=2)
    teachers = [s for s in specs if s.role == "teacher"]
    students = [s for s in specs if s.role != "teacher"]
    assert chunks[0] == [[s.run_id for s in c] for c in split_evenly([teachers], 2,
                                                                      lambda s: s.seed)]
    assert chunks[1] == [[s.run_id for s in c] for c in split_evenly([students], 2,
                                                                     lambda s: s.seed)]
    assert [len(c) for c in chunks[1]] == [9, 9]
    done = {s.run_id for s in teachers}  # teachers done: one phase left
    assert chunked(specs, done, workers=1) == [[[s.run_id for s in b] for b in bundles(specs)
                                               if b[0].role != "teacher"]]
    assert phase_seconds([9.0, 9.0], 2) == 9.0


def test_kdfair_plan_prints_the_yaml_the_runs_and_an_estimate(tiny, tmp_path):
    res = CliRunner().invoke(app, ["plan", str(tiny), "--out", str(tmp_path / "out"),
                                   "--set", "distill.alpha=0.5"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.startswith("# the experiment as it will run")
    resolved = yaml.safe_load(out.split("\ntiny-plan: 8 runs")[0])
    assert resolved["distill"]["alpha"] == 0.5 and resolved["engine"]["threads"] == 1
    assert f"tiny-plan: 8 runs (0 already done, 8 to train) → {tmp_path / 'out' / 'tiny-plan'}" \
        in out
    table = [line.split() for line in out.splitlines() if line.startswith("  ")
             and line.split()[0] in ("role", "teacher", "NDS", "DS")]
    assert table[0] == ["role", "runs", "done", "to", "train", "per", "run"]
    assert [row[:-1] for row in table[1:]] == [["teacher", "2", "0", "2"], ["NDS", "2", "0", "2"],
                                               ["DS", "T=2", "2", "0", "2"],
                                               ["DS", "T=8", "2", "0", "2"]]
    assert "estimate: " in out and "training " in out and "on 1 worker(s) (cpu, 1 thread(s) " \
        "each), report " in out
    # its progress (loading, timing) goes to stderr, one line each off a terminal
    assert "loading data set digits…" in res.stderr
    assert "timing a few training steps of teacher (resnet8)…" in res.stderr
    assert not (tmp_path / "out").exists()


def test_run_dry_run_prints_the_plan_and_trains_nothing(tiny, tmp_path):
    res = CliRunner().invoke(app, ["run", str(tiny), "--out", str(tmp_path / "out"),
                                   "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "tiny-plan: 8 runs (0 already done, 8 to train)" in res.stdout
    assert "estimate: " in res.stdout
    assert not (tmp_path / "out").exists()


def test_a_plan_without_its_data_still_counts_the_runs_and_says_why_no_estimate(tmp_path):
    res = CliRunner().invoke(app, ["plan", "cifar10-r56-r20", "--out", str(tmp_path / "out"),
                                   "--data-root", str(tmp_path / "nothing-here")])
    assert res.exit_code == 0, res.output
    # 5 seeds × (a teacher, an NDS, a DS at each of 13 temperatures)
    assert "cifar10-r56-r20: 75 runs (0 already done, 75 to train)" in res.stdout
    assert "no time estimate: data set 'cifar10' not found." in res.stdout
    assert "extract cifar-10-python.tar.gz in the data root" in res.stdout


@pytest.mark.slow
def test_after_a_run_the_plan_says_every_run_is_done(tiny, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(tiny), "--out", str(out), "--no-report"])
    assert res.exit_code == 0, res.output
    # the run's log opened with the estimate
    assert "study: 0/8 runs done at start, estimate " in res.stderr
    again = CliRunner().invoke(app, ["plan", str(tiny), "--out", str(out)])
    assert "tiny-plan: 8 runs (8 already done, 0 to train)" in again.stdout
    p = api.plan(tiny, out)
    assert p.done == {s.run_id for s in p.specs} and p.estimate.train_s == 0
    assert p.refusal is None
    # another configuration: the plan says `kdfair run` would refuse, naming what differs
    other = CliRunner().invoke(app, ["plan", str(tiny), "--out", str(out), "--set",
                                     "distill.alpha=0.5"])
    assert other.exit_code == 0, other.output
    assert "`kdfair run` would refuse this directory:" in other.stdout
    assert "distill.alpha: 0.8 → 0.5" in other.stdout


def test_a_plan_whose_data_cannot_load_counts_done_runs_by_the_stores_fingerprint(
        tiny, tmp_path, monkeypatch):
    from kdfair import planning
    from kdfair.errors import ConfigError
    from kdfair.store.files import write_json

    first = api.plan(tiny, tmp_path, probe=False)  # the run ids of the real data
    where = first.where
    (where / "runs").mkdir(parents=True)
    write_json(where / "data.json", {"fingerprint": first.specs[0].data_fingerprint})
    monkeypatch.setattr(planning, "_done", lambda w: {first.specs[0].run_id})

    def no_data(exp, root):
        raise ConfigError("data set 'digits' not found")

    monkeypatch.setattr(planning, "load_data", no_data)
    p = api.plan(tiny, tmp_path, probe=False)
    assert p.problem == "data set 'digits' not found"
    assert [s.run_id for s in p.specs] == [s.run_id for s in first.specs]
    assert p.done == {first.specs[0].run_id}


def test_a_given_teacher_is_timed_as_its_evaluation_its_weights_never_loaded(tiny):
    from dataclasses import replace

    import torch

    from kdfair.planning import probe_run
    from kdfair.runner import load_data, plan

    exp = api.load_experiment(tiny)
    data = load_data(exp)
    teacher = plan(exp, data.fingerprint)[0]
    given = replace(teacher, given=True, model_options={"weights": "NOT-A-FILE", "download": False})
    probe = probe_run(given, data, torch.device("cpu"))
    assert probe.steps_per_epoch == 0 and probe.step_s == 0.0 and probe.after_s > 0
    assert probe.run_seconds(given) == probe.after_s  # no epochs: evaluated only


def test_no_probe_in_the_parent_of_one_worker_per_gpu(tiny, monkeypatch):
    """Several GPUs: the progress view's probe would initialise CUDA in this process, and the
    local executor could then no longer fork its GPU workers; no probe there (the view learns
    from the runs). One GPU or a CPU: the probe runs."""
    import torch

    from kdfair import planning

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    probed = []
    monkeypatch.setattr(planning, "estimate", lambda *a, **k: probed.append(a) or 1 / 0)
    exp = api.load_experiment(tiny)
    gpu = exp.model_copy(update={"device": "cuda"})
    assert planning.progress_schedule(gpu, [], set(), None) is None and probed == []
    assert planning.progress_schedule(exp, [], set(), None) is None and len(probed) == 1


def test_the_probe_runs_under_the_engines_numerics(tiny, monkeypatch):
    """engine.deterministic (and precision) hold while the probe trains, as they will in
    training: on CUDA, cuBLAS's workspace setting must be in place before the first handle."""
    import torch

    from kdfair.train import engine

    seen = []
    real = engine.train_group

    def spy(*a, **kw):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real(*a, **kw)

    monkeypatch.setattr(engine, "train_group", spy)
    p = api.plan(tiny, tiny.parent / "out", overrides=["engine.deterministic=true"])
    assert p.estimate is not None and seen and all(seen)
    assert not torch.are_deterministic_algorithms_enabled()  # restored
