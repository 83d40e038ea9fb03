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
from kdfair.store import ResultsDir
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
    store = ResultsDir(tmp_path)
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
    ResultsDir(tmp_path).init({"name": "e"})  # a new run cleans the leftovers of dead writers
    assert not store.tmp_dir.exists()
    with pytest.raises(StoreError, match="holds experiment 'e', not 'other'"):
        ResultsDir(tmp_path).init({"name": "other"})


def test_changed_experiment_is_refused_not_mixed(tmp_path):
    toy_study(tmp_path, temperatures=(2,), seeds=(0, 1))
    toy_study(tmp_path, temperatures=(2, 4), seeds=(0, 1))  # a grid grown: allowed, adds runs
    assert len(ResultsDir(tmp_path / "toy").done_ids()) == 2 + 2 + 4
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


def test_float16_keeps_each_rows_argmax_and_refuses_out_of_range():
    from kdfair.store.arrays import float16_keeping_argmax

    x = np.array([[1.0, 1.0001, 0.5], [3.0, 2.0, 1.0], [7.00001, 7.0, -1.0]], np.float32)
    assert np.float16(1.0) == np.float16(1.0001)  # a tie after rounding
    h = float16_keeping_argmax(x)
    assert h.dtype == np.float16 and np.array_equal(h.argmax(1), x.argmax(1))
    assert np.abs(h.astype(np.float32) - x).max() < 2e-3
    assert float16_keeping_argmax(np.array([[7e4, 0.0]], np.float32)) is None


def _saved(tmp_path, dtype="float32"):
    store = ResultsDir(tmp_path)
    store.init({"name": "e"})
    logits = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    index = np.array([3, 0, 1, 2, 5, 4])
    store.save_run(_spec(), {"test_acc": 0.5}, logits[index], (np.arange(6) % 4)[index], index,
                   logits_dtype=dtype)
    return store, logits


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_readers_return_index_order_and_touch_only_their_files(tmp_path, dtype):
    from kdfair.store import CorruptRun, open_store, read_labels, read_logits, read_predictions

    store, logits = _saved(tmp_path, dtype)
    (tmp_path / "data.json").write_text(json.dumps({"n_test": 6, "num_classes": 4}))
    idx = open_store(tmp_path)
    (run,) = idx.runs
    want = logits.astype(dtype).astype(np.float32)
    buf = np.empty((6, 4), np.float32)
    got, labels = read_predictions(run, 6, out=buf)
    assert got is buf and np.array_equal(got, want) and np.array_equal(labels, np.arange(6) % 4)
    assert np.array_equal(read_logits(run, 6), want)
    d = store.run_dir(run.run_id)
    (d / "logits.npy").write_bytes((d / "logits.npy").read_bytes()[:100])
    assert np.array_equal(read_labels(run, 6), np.arange(6) % 4)  # logits never opened
    with pytest.raises(CorruptRun, match="logits.npy"):
        read_logits(run, 6, out=buf)


def test_a_store_of_the_previous_release_is_still_read(tmp_path):
    """Run directories with one predictions.npz and no manifest (what 0.x wrote)."""
    from kdfair.store import open_store, read_predictions

    store, logits = _saved(tmp_path)
    d = store.run_dir(_spec().run_id)
    arrays = {k: np.load(d / f"{k}.npy") for k in ("logits", "labels", "index")}
    for name in ("logits.npy", "labels.npy", "index.npy", "manifest.json"):
        (d / name).unlink()
    np.savez(d / "predictions.npz", **arrays)
    assert ResultsDir(tmp_path).check(_spec().run_id).state == "done"
    (run,) = open_store(tmp_path).runs
    got, labels = read_predictions(run, 6)
    assert np.array_equal(got, logits) and np.array_equal(labels, np.arange(6) % 4)
    (d / "predictions.npz").write_bytes((d / "predictions.npz").read_bytes()[:300])
    chk = ResultsDir(tmp_path).check(_spec().run_id)
    assert chk.state == "damaged" and "not a readable .npz" in chk.reason


def test_engine_threads_and_the_default_capped_by_the_available_cores(monkeypatch):
    import torch

    import kdfair.config as config
    from kdfair.runner import _threads

    before = torch.get_num_threads()
    monkeypatch.setattr(config, "available_cores", lambda: 1)
    try:
        torch.set_num_threads(2)
        with _threads(0):
            assert torch.get_num_threads() == 1
        with _threads(3):
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 2
        assert config.engine_threads(config.EngineConfig(), workers=4) == 1
        assert config.engine_threads(config.EngineConfig(threads=5), workers=4) == 5
    finally:
        torch.set_num_threads(before)
