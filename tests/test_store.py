"""Run store: atomic run directories, resume after a killed process, refusal to mix configs."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdfair.errors import StoreError
from kdfair.spec import RunSpec
from kdfair.store import RunStore
from tests.toy import toy_study

ROOT = Path(__file__).resolve().parents[1]


def _spec(seed=0):
    return RunSpec(experiment="e", role="nds", arch="lenet5", seed=seed, train={"lr": 0.1},
                   dataset={"name": "digits"}, data_fingerprint="f")


def test_run_id_is_readable_and_changes_with_the_spec():
    a, b = _spec(0), _spec(1)
    assert a.run_id.startswith("nds-s0-") and len(a.run_id) == len("nds-s0-") + 8
    assert a.run_id == _spec(0).run_id and a.run_id[-8:] != b.run_id[-8:]
    ds = RunSpec(experiment="e", role="ds", arch="lenet5", seed=2, train={}, dataset={},
                 data_fingerprint="f", temperature=2.5, alpha=0.8, t2_scaling=True)
    assert ds.run_id.startswith("ds-T2.5-s2-")
    assert RunSpec.from_json(ds.to_json()) == ds


def test_save_run_round_trip_and_only_complete_runs_are_visible(tmp_path):
    store = RunStore(tmp_path)
    store.init({"name": "e"})
    spec = _spec()
    logits = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    # a crashed writer leaves its half-written directory in .tmp, never in runs/
    (store.tmp_dir / "nds-s0-deadbeef.1").mkdir(parents=True)
    assert store.done_ids() == set()
    store.save_run(spec, {"test_acc": 0.5}, logits, np.arange(5) % 3, np.arange(5))
    assert store.done_ids() == {spec.run_id}
    d = store.run_dir(spec.run_id)
    assert json.loads((d / "spec.json").read_text())["run_id"] == spec.run_id
    saved = np.load(d / "logits.npy", mmap_mode="r", allow_pickle=False)
    assert np.array_equal(saved, logits) and saved.dtype == np.float32
    assert isinstance(saved, np.memmap)  # memory-mappable: the reader copies nothing
    assert store.load_metrics(spec.run_id)["status"] == "ok"
    manifest = json.loads((d / "manifest.json").read_text())["files"]
    assert set(manifest) == {"spec.json", "metrics.json", "logits.npy", "labels.npy",
                             "index.npy"}
    assert manifest["logits.npy"]["sha256"] == hashlib.sha256(
        (d / "logits.npy").read_bytes()).hexdigest()
    inode = d.stat().st_ino
    store.save_run(spec, {}, logits, np.zeros(5), np.arange(5))  # a valid twin: a no-op
    assert d.stat().st_ino == inode and store.load_metrics(spec.run_id).get("test_acc") == 0.5
    RunStore(tmp_path).init({"name": "e"})  # a new run cleans the leftovers of dead writers
    assert not store.tmp_dir.exists()
    with pytest.raises(StoreError, match="holds experiment 'e', not 'other'"):
        RunStore(tmp_path).init({"name": "other"})


def test_changed_experiment_is_refused_not_mixed(tmp_path):
    toy_study(tmp_path, temperatures=(2,), seeds=(0, 1))
    toy_study(tmp_path, temperatures=(2, 4), seeds=(0, 1))  # a grid grown: allowed, adds runs
    assert len(RunStore(tmp_path / "toy").done_ids()) == 2 + 2 + 4
    from tests import toy

    toy.TRAIN["lr"] = 0.02  # a changed recipe: every stored run is stale
    try:
        with pytest.raises(StoreError, match="different configuration.*new directory"):
            toy_study(tmp_path, temperatures=(2, 4), seeds=(0, 1))
    finally:
        toy.TRAIN["lr"] = 0.05


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests import toy
toy.TRAIN["epochs"] = 6
toy.toy_study({out!r}, temperatures=(1, 2, 4), seeds=(0, 1))
"""


def test_resume_after_kill_minus_9_loses_only_runs_in_progress(tmp_path):
    script = SCRIPT.format(root=str(ROOT), out=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    runs = tmp_path / "toy" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline:
        if runs.exists() and len(list(runs.iterdir())) >= 2:  # the teachers
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_ino for p in runs.iterdir()}
    assert 2 <= len(before) < 10, "kill came too late to test resuming"
    for d in runs.iterdir():  # every visible run is complete
        assert {"spec.json", "metrics.json", "logits.npy", "manifest.json"} <= {
            f.name for f in d.iterdir()}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=300)
    assert done.returncode == 0
    after = {p.name: p.stat().st_ino for p in runs.iterdir()}
    assert len(after) == 2 + 2 + 6
    assert all(after[k] == v for k, v in before.items()), "a finished run was redone"
