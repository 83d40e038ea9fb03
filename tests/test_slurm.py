"""Studies on a real SLURM cluster (``bash scripts/slurm-up.sh`` brings up a single node).

Every test skips, with the reason, where no cluster answers. They run ``kdfair run --executor
slurm`` as a user would, from a subprocess, and check the run store: the same runs and
predictions as locally, nothing finished redone after a cancelled or preempted job, and errors
before anything is submitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdfair.executors import partitions, slurm_available, submitted_jobs
from kdfair.store.arrays import load_predictions

WHY_NOT = slurm_available()
pytestmark = [
    pytest.mark.skipif(WHY_NOT is not None,
                       reason=f"needs a running SLURM cluster (bash scripts/slurm-up.sh): "
                              f"{WHY_NOT}"),
    pytest.mark.slow,
]
ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = """
name: {name}
dataset: {{name: digits, size: 16}}
teacher: {{model: {{arch: resnet8}}, train: {{epochs: 1, batch_size: 64}}}}
student: {{model: {{arch: lenet5}}, train: {{epochs: 1, batch_size: 64}}}}
distill: {{temperatures: [2, 4]}}
seeds: [0, 1]
device: cpu
slurm: {{cpus: 1, time: 10}}
"""
N_RUNS = 2 + 2 + 4


@pytest.fixture
def study(tmp_path, request):
    """An experiment file with a name of its own; its jobs are cancelled when the test ends."""
    name = "slurm-" + request.node.name.removeprefix("test_")[:24].replace("_", "-")
    path = tmp_path / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(name=name))
    yield name, path
    for phase in ("check", "teachers", "students"):
        subprocess.run(["scancel", "-n", f"kdfair-{name}-{phase}"], capture_output=True)


def kdfair(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "kdfair.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def start_kdfair(*args: object) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "kdfair.cli", *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def default_partition() -> str:
    return next(p.name for p in partitions().values() if p.default)


def running_job(job_name: str, timeout: float = 180) -> str:
    """The id of the first RUNNING job of that name (array tasks one by one)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(["squeue", "-h", "-r", "-n", job_name, "-t", "RUNNING", "-o", "%i"],
                           capture_output=True, text=True)
        ids = r.stdout.split()
        if ids:
            return ids[0]
        time.sleep(0.2)
    raise AssertionError(f"no job {job_name} was running within {timeout} s")


def logits(root: Path) -> dict[str, np.ndarray]:
    return {p.name: load_predictions(p)["logits"] for p in (root / "runs").iterdir()}


def inodes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in (root / "runs").iterdir()}


def test_study_on_slurm_matches_the_same_study_run_locally(study, tmp_path, one_thread):
    from kdfair import api
    from kdfair.config import load_experiment

    name, path = study
    exp = load_experiment(path)
    api.run(exp, out=tmp_path / "local")  # one thread, as the jobs (slurm cpus: 1)
    res = kdfair("run", path, "--out", tmp_path / "slurm", "--executor", "slurm",
                 "--slurm-partition", default_partition())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 job(s) ended" in res.stdout and f"{N_RUNS} runs done, 0 failed" in res.stdout
    local, slurm = tmp_path / "local" / name, tmp_path / "slurm" / name
    a, b = logits(local), logits(slurm)
    assert len(a) == N_RUNS and sorted(a) == sorted(b)  # the same run ids
    for run_id in a:
        assert np.array_equal(a[run_id], b[run_id]), f"{run_id}: predictions differ"
    for table in ("summary", "accuracy", "classwise", "individual", "disagreement"):
        # the same predictions; the analysis' float sums may differ in the last digits
        pd.testing.assert_frame_equal(pd.read_csv(local / "report" / f"{table}.csv"),
                                      pd.read_csv(slurm / "report" / f"{table}.csv"),
                                      check_exact=False, rtol=1e-6, obj=f"report {table}")
    records = submitted_jobs(slurm)  # one job array per phase, one job per bundle
    assert [(r["phase"], len(r["jobs"])) for r in records] == [("teachers", 1), ("students", 1)]
    assert all(j["runs"] for r in records for j in r["jobs"])


def test_job_cancelled_mid_study_is_resubmitted_and_nothing_finished_is_redone(study, tmp_path):
    name, path = study
    args = ["run", path, "--out", tmp_path, "--executor", "slurm", "--slurm-runs-per-job", "1",
            "--no-report"]
    proc = start_kdfair(*args)
    try:
        victim = running_job(f"kdfair-{name}-students")
        subprocess.run(["scancel", victim], check=True)
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 3, out  # the study ended with a failed run
    root = tmp_path / name
    (victim_runs,) = [j["runs"] for r in submitted_jobs(root) for j in r["jobs"]
                      if j["job_id"] == victim]
    log = next(j["log"] for r in submitted_jobs(root) for j in r["jobs"] if j["job_id"] == victim)
    assert f"failed job {victim} (CANCELLED" in out and f"log: {log}" in out
    assert Path(log).exists()
    done = set(inodes(root))
    assert len(done) == N_RUNS - 1 and not done & set(victim_runs)  # no partial run
    failure = json.loads((root / "failed" / f"{victim_runs[0]}.json").read_text())
    assert "CANCELLED" in failure["error"] and log in failure["error"]
    status = kdfair("status", root)
    assert f"{N_RUNS - 1} done, 0 missing, 1 failed" in status.stdout

    before = inodes(root)
    again = kdfair(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{N_RUNS} runs done, 0 failed, 0 missing" in again.stdout
    last = submitted_jobs(root)[-1]
    assert [j["runs"] for j in last["jobs"]] == [victim_runs]  # only what was missing
    after = inodes(root)
    assert len(after) == N_RUNS and all(after[k] == v for k, v in before.items()), \
        "a finished run was trained again"
    assert not list((root / "failed").glob("*.json"))


def test_unknown_partition_fails_before_anything_is_submitted(study, tmp_path):
    name, path = study
    res = kdfair("run", path, "--out", tmp_path, "--executor", "slurm",
                 "--slurm-partition", "no-such-partition")
    assert res.returncode == 1
    assert "unknown SLURM partition 'no-such-partition'" in res.stderr
    assert f"{default_partition()} (default)" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / name).exists()  # nothing written, nothing submitted
    queued = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True)
    assert f"kdfair-{name}" not in queued.stdout


@pytest.mark.parametrize("flags,message", [
    (["--slurm-cpus", "100000"], "the jobs ask for more than a node of"),
    (["--slurm-option", "constraint=no-such-feature"], "Invalid feature specification"),
    (["--slurm-gpus", "1"], "jobs would ask for 1 GPU(s) but partition"),
])
def test_settings_slurm_refuses_fail_before_anything_is_submitted(study, tmp_path, flags,
                                                                   message):
    name, path = study
    if message.startswith("jobs would ask") and any(
            "gpu" in p.gres for p in partitions().values()):
        pytest.skip("this cluster has GPUs")
    res = kdfair("run", path, "--out", tmp_path, "--executor", "slurm", *flags)
    assert res.returncode == 1 and message in res.stderr, res.stderr
    assert "nothing was submitted" in res.stderr and not (tmp_path / name).exists()


def test_no_wait_submits_both_phases_and_the_study_completes_on_its_own(study, tmp_path):
    name, path = study
    args = ["run", path, "--out", tmp_path, "--executor", "slurm", "--no-wait"]
    res = kdfair(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"submitted 2 job(s) for {N_RUNS} run(s)" in res.stdout
    root = tmp_path / name
    teachers, students = submitted_jobs(root)
    assert students["dependency"] == f"afterany:{teachers['array']}"
    # held, so that they are surely still queued below however slowly this machine runs (they
    # cannot start before the teachers end, and the hold comes right after the submission)
    subprocess.run(["scontrol", "hold", str(students["array"])], check=True)
    try:
        twice = kdfair(*args)  # the jobs are still queued: nothing is submitted twice
    finally:
        subprocess.run(["scontrol", "release", str(students["array"])], check=True)
    assert twice.returncode == 1 and "still pending or running" in twice.stderr
    assert len(submitted_jobs(root)) == 2
    deadline = time.time() + 240
    while time.time() < deadline:
        status = kdfair("status", root)
        if f"{N_RUNS} done, 0 missing, 0 failed" in status.stdout:
            break
        time.sleep(2)
    else:
        raise AssertionError(f"the study did not complete: {status.stdout}")
    rep = kdfair("report", root)
    assert rep.returncode == 0 and (root / "report" / "report.md").exists()


def test_preempted_job_is_requeued_and_finishes(study, tmp_path):
    """Preemption: SLURM signals the job (USR2, as submitit asks), submitit requeues it, and the
    requeued job trains what the store still lacks."""
    name, path = study
    # students that train for a while, so the signal surely reaches a job still training
    slow = path.read_text().replace("lenet5}, train: {epochs: 1,", "lenet5}, train: {epochs: 30,")
    assert slow != path.read_text()
    path.write_text(slow)
    proc = start_kdfair("run", path, "--out", tmp_path, "--executor", "slurm", "--no-report")
    try:
        job = running_job(f"kdfair-{name}-students")
        log = Path(next(j["log"] for r in submitted_jobs(tmp_path / name) for j in r["jobs"]
                        if j["job_id"] == job)).with_suffix(".out")
        deadline = time.time() + 60  # the job is in Python, with submitit's handlers set
        while time.time() < deadline and "run(s) on" not in (
                log.read_text() if log.exists() else ""):
            time.sleep(0.2)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            info = subprocess.run(["scontrol", "show", "job", job], capture_output=True,
                                  text=True).stdout
            if "Restarts=1" in info and "JobState=PENDING" in info:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"job {job} was not requeued: {info}")
        # SLURM holds a requeued job for ~2 minutes; a test need not wait that long, but a
        # restart within the second of the kill is refused ("Job credential revoked": slurmd
        # compares times in whole seconds) and the job ends failed — wait past that second
        time.sleep(2.5)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"{N_RUNS} runs done, 0 failed, 0 missing" in out and "failed job" not in out
    assert len(inodes(tmp_path / name)) == N_RUNS


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs the check job as nobody)")
def test_results_dir_a_job_cannot_write_is_refused_before_submitting(study, tmp_path):
    name, path = study
    res = kdfair("run", path, "--out", tmp_path, "--executor", "slurm",
                 "--slurm-option", "uid=nobody")  # the job runs as a user who may not write
    assert res.returncode == 1, res.stdout + res.stderr
    assert "could not write into" in res.stderr and "nothing else was submitted" in res.stderr
    assert submitted_jobs(tmp_path / name) == []
