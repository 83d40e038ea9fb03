"""End to end through the command line: run, resume, status, report, and friendly errors."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kdfair.cli import app

EXPERIMENT = """
name: tiny
dataset: {name: digits, size: 16}
teacher:
  model: {arch: resnet8}
  train: {epochs: 2, batch_size: 64, lr: 0.05}
student:
  model: {arch: lenet5}
  train: {optimizer: adam, lr: 0.003, weight_decay: 0.0, epochs: 2, batch_size: 64,
          augment: none}
distill: {temperatures: [2, 8]}
seeds: [0, 1]
device: cpu
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_run_resume_status_report(tmp_path):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(EXPERIMENT)
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    root = tmp_path / "out" / "tiny"
    runs = sorted(p.name for p in (root / "runs").iterdir())
    assert len(runs) == 2 + 2 + 4
    assert {r.split("-")[0] for r in runs} == {"teacher", "nds", "ds"}
    metrics = json.loads((root / "runs" / runs[0] / "metrics.json").read_text())
    assert 0 <= metrics["test_acc"] <= 1 and metrics["epochs"] == 2
    report = root / "report"
    assert (report / "report.md").exists() and (report / "report.html").exists()
    assert "summary" in res.output

    again = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "out"), "--no-report"])
    assert again.exit_code == 0 and "8 already done" in again.output

    st = runner.invoke(app, ["status", str(root)])
    assert st.exit_code == 0 and "8 done, 0 missing, 0 failed" in st.output


def test_errors_are_one_clear_message_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXPERIMENT.replace("alpha", "x").replace("temperatures: [2, 8]",
                                                             "temperatures: [2, -1]"))
    proc = subprocess.run([sys.executable, "-m", "kdfair.cli", "run", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "distill.temperatures: temperatures must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    res = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert res.exit_code == 1 and "not a kdfair results directory" in res.output


def test_presets_lists_names_first():
    res = CliRunner().invoke(app, ["presets"])
    assert res.exit_code == 0
    names = [line.split("\t")[0] for line in res.output.splitlines()]
    assert "demo" in names


def test_status_shows_runs_whose_slurm_job_is_still_queued(tmp_path, monkeypatch):
    from kdfair import executors
    from kdfair.executors import JobState
    from kdfair.store import ResultsDir

    store = ResultsDir(tmp_path)
    store.init({"name": "q"})
    store.write_plan(["teacher-s0-aaaaaaaa", "nds-s0-bbbbbbbb", "ds-T2-s0-cccccccc"])
    jobs = [JobState("41", ["nds-s0-bbbbbbbb"], "x.err", state="PENDING"),
            JobState("42", ["ds-T2-s0-cccccccc"], "y.err", state="RUNNING")]
    monkeypatch.setattr(executors, "submitted_jobs", lambda r: [{"jobs": []}])
    monkeypatch.setattr(executors, "job_states", lambda r: jobs)
    res = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert res.exit_code == 3, res.output  # not every run is done yet
    assert "SLURM job 41" in res.output and "SLURM job 42" in res.output
    assert "0 done, 1 pending, 1 running, 1 missing, 0 failed" in res.output


def test_trifeature_command_sets_the_test_size_apart(tmp_path):
    import csv

    res = CliRunner().invoke(app, ["trifeature", "--out", str(tmp_path), "--size", "8",
                                   "--images-per-combination", "1",
                                   "--test-images-per-combination", "2"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "index.csv")))
    splits = [r["split"] for r in rows]
    assert (splits.count("test"), len(splits) - splits.count("test")) == (400, 800)
    bad = CliRunner().invoke(app, ["trifeature", "--out", str(tmp_path / "b"), "--split",
                                   "images", "--test-images-per-combination", "2"])
    assert bad.exit_code == 1 and "test_images_per_combination applies to split: " \
        "combinations" in " ".join(bad.output.split())


def test_trifeature_command_writes_pngs_and_an_index(tmp_path):
    import csv

    from PIL import Image

    res = CliRunner().invoke(app, ["trifeature", "--out", str(tmp_path), "--size", "16",
                                   "--images-per-combination", "1"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "index.csv")))
    assert len(rows) == 1000 and {r["split"] for r in rows} >= {"train", "test"}
    img = Image.open(tmp_path / rows[0]["file"])
    assert img.size == (16, 16)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["run", "--help"]])
def test_help_and_version_do_not_import_torch(args):
    code = ("import sys\nfrom kdfair.cli import app\ntry:\n    app(sys.argv[1:])\n"
            "except SystemExit:\n    pass\n"
            "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "no torch", proc.stderr
    assert "kdfair" in proc.stdout


def _stopped_run(monkeypatch):
    """api.execute replaced by one that records the experiment it gets and stops."""
    from kdfair import api
    from kdfair.errors import KdfairError

    seen = {}

    def stop(exp, *args, **kwargs):
        seen["exp"] = exp
        raise KdfairError("stopped before training")

    monkeypatch.setattr(api, "execute", stop)
    return seen


def test_flags_are_overrides_of_one_load_validated_once(tmp_path, monkeypatch):
    from kdfair import config

    exp = tmp_path / "tiny.yaml"
    exp.write_text(EXPERIMENT + "slurm: {partition: cpu, options: {qos: low}}\n")
    seen = _stopped_run(monkeypatch)
    validations = []
    real = config.experiment_from_dict
    monkeypatch.setattr(config, "experiment_from_dict",
                        lambda *a, **k: validations.append(a[1]) or real(*a, **k))
    res = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path), "--device", "auto",
                                   "--set", "distill.alpha=0.5", "--set", "device=cpu"])
    assert res.exit_code == 1 and "stopped before training" in res.output, res.output
    assert seen["exp"].device == "auto" and seen["exp"].distill.alpha == 0.5  # the flag wins
    assert len(validations) == 1
    assert validations[0].endswith("with --set distill.alpha=0.5 --set device=cpu --device auto")


def test_slurm_flags_are_overrides_of_the_slurm_section(tmp_path, monkeypatch):
    from kdfair import api
    from kdfair.errors import KdfairError

    exp = tmp_path / "tiny.yaml"
    exp.write_text(EXPERIMENT + "slurm: {partition: cpu, options: {qos: low}}\n")
    seen = {}

    def stop(name, exp, out, **kwargs):  # the API builds the executor
        seen.update(name=name, exp=exp, **kwargs)
        raise KdfairError("stopped before submitting")

    monkeypatch.setattr(api, "make_executor", stop)
    res = CliRunner().invoke(app, [
        "run", str(exp), "--out", str(tmp_path), "--executor", "slurm", "--no-wait",
        "--set", "slurm.partition=debug", "--slurm-partition", "gpu", "--slurm-time", "1:30:00",
        "--slurm-mem", "4", "--slurm-runs-per-job", "2", "--slurm-option", "constraint=a100",
        "--slurm-option", "exclusive"])
    assert res.exit_code == 1 and "stopped before submitting" in res.output, res.output
    slurm = seen["exp"].slurm
    assert seen["name"] == "slurm" and seen["wait"] is False
    assert slurm.partition == "gpu" and slurm.time == 90 and slurm.mem_gb == 4
    assert slurm.runs_per_job == 2
    assert slurm.options == {"qos": "low", "constraint": "a100", "exclusive": True}


@pytest.mark.parametrize("flags, expected", [
    (["--device", "gpu"], ["with --device gpu:", "device: must be one of auto, cpu, cuda"]),
    (["--executor", "slurm", "--slurm-time", "soon"],
     ["with --slurm-time soon:", "slurm.time: not a SLURM time: 'soon'"]),
    (["--executor", "slurm", "--slurm-option", "=x"], ["--slurm-option '=x': give KEY=VALUE"]),
])
def test_a_bad_flag_value_names_the_flag_and_the_field(tmp_path, flags, expected):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(EXPERIMENT)
    res = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path), *flags])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert all(e in text for e in expected), text
    assert not (tmp_path / "tiny").exists()


def test_brackets_in_what_the_cli_prints_are_text_not_markup(tmp_path):
    """Rich reads '[a]' or '[all seeds equal]' as markup and drops it: the error quoting what the
    user typed, and a report's findings, keep their brackets."""
    from analysis_fixtures import write_store

    res = CliRunner().invoke(app, ["run", "demo", "--out", str(tmp_path / "o"), "--set",
                                   "distill.temperatures=[a]"])
    assert res.exit_code != 0 and "--set distill.temperatures=[a]" in res.output
    root = write_store(tmp_path / "s", num_classes=3, temperatures=(2.0,), seeds=(0, 1, 2),
                       features=False,
                       accuracy=lambda role, t, s, c: 1.0 if role == "teacher" else 0.7)
    rep = CliRunner().invoke(app, ["report", str(root)])
    assert rep.exit_code == 0
    assert "teacher 100.00 % [all seeds equal]" in " ".join(rep.output.split())
