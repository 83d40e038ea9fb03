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
    from kdfair.store import RunStore

    store = RunStore(tmp_path)
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
