"""Fault injection: damage a real store made by a real tiny study, then check the message, the
exit status, and that no finished run is lost or redone (by inode and mtime).

The study (digits, 1 epoch, 6 runs) is built once per module through the command line; every
case works on its own copy.
"""

from __future__ import annotations

import errno
import gc
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kdfair.cli import app
from kdfair.store import ResultsDir, open_store
from kdfair.store.files import sealed

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = """
name: faults
dataset: {name: digits, size: 16}
teacher:
  model: {arch: lenet5}
  train: {epochs: 1, batch_size: 64, lr: 0.05}
student:
  model: {arch: lenet5}
  train: {optimizer: adam, lr: 0.003, weight_decay: 0.0, epochs: 1, batch_size: 64,
          augment: none}
distill: {temperatures: [2]}
seeds: [0, 1]
device: cpu
engine: {threads: 1}
"""
N_RUNS = 6


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """run id -> (inode, mtime_ns) of each run directory's logits: a redone run changes both."""
    out = {}
    for d in (root / "runs").iterdir():
        st = (d / "logits.npy").stat()
        out[d.name] = (d.stat().st_ino, st.st_mtime_ns)
    return out


def run_id(root: Path, prefix: str) -> str:
    return next(p.name for p in sorted((root / "runs").iterdir()) if p.name.startswith(prefix))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    exp = base / "faults.yaml"
    exp.write_text(EXPERIMENT)
    import torch

    torch.set_num_threads(1)
    res = cli("run", exp, "--out", base / "out")
    assert res.exit_code == 0, res.output
    return base


@pytest.fixture
def study(built, tmp_path):
    """(experiment file, results directory) of a fresh copy of the built study."""
    shutil.copytree(built / "out", tmp_path / "out", symlinks=True)
    exp = tmp_path / "faults.yaml"
    exp.write_text(EXPERIMENT)
    return exp, tmp_path / "out" / "faults"


def rerun(exp: Path, root: Path, *extra: str):
    return cli("run", exp, "--out", root.parent, "--no-report", *extra)


def assert_kept(before: dict, after: dict, redone: set[str] = frozenset()) -> None:
    assert set(before) <= set(after), "a finished run was lost"
    for rid, v in before.items():
        if rid not in redone:
            assert after[rid] == v, f"{rid} was redone"


# --- names and paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b"])
def test_name_that_is_not_one_path_component_is_refused(tmp_path, name):
    (tmp_path / "out" / ".tmp").mkdir(parents=True)
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT.replace("name: faults", f"name: {json.dumps(name)}"))
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1 and f"name {name!r} is not allowed" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.yaml", "out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".tmp"]  # nothing written


def test_run_ids_and_paths_outside_the_store_are_refused(tmp_path):
    from kdfair.errors import StoreError

    store = ResultsDir(tmp_path / "s")
    with pytest.raises(StoreError, match="cannot be used as a file name"):
        store.run_dir("../escape")
    with pytest.raises(StoreError, match="cannot be used as a file name"):
        store.init({"name": ".."})
    (tmp_path / "s" / "runs").mkdir(parents=True)
    (tmp_path / "s" / "runs" / "link").symlink_to(tmp_path)
    with pytest.raises(StoreError, match="outside the results directory"):
        store.run_dir("link")


# --- damaged runs ------------------------------------------------------------------------------


def _delete(f: Path) -> None:
    f.unlink()


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garbage(f: Path) -> None:
    f.write_text("{not json")


def _flip(f: Path) -> None:  # same size, other bytes: only the SHA-256 sees it
    b = bytearray(f.read_bytes())
    b[-1] ^= 0xFF
    f.write_bytes(bytes(b))


@pytest.mark.parametrize("file,damage,reason", [
    ("logits.npy", _delete, "logits.npy is missing"),
    ("logits.npy", _truncate, "logits.npy has"),
    ("logits.npy", _flip, "does not match its SHA-256"),
    ("spec.json", _garbage, "spec.json has"),
    ("metrics.json", _garbage, "metrics.json has"),
    ("metrics.json", _delete, "metrics.json is missing"),
    ("manifest.json", _garbage, "manifest.json is corrupt"),
])
def test_damaged_run_is_reported_moved_aside_and_retrained(study, file, damage, reason):
    exp, root = study
    victim = run_id(root, "ds-T2-s1")
    before = snapshot(root)
    damage(root / "runs" / victim / file)
    st = cli("status", root)
    assert st.exit_code == 3, st.output
    assert "damaged" in st.output and reason in st.output and f"{N_RUNS - 1} done" in st.output
    res = rerun(exp, root)
    assert res.exit_code == 0, res.output
    assert f"damaged {victim}" in res.output and "trained again" in res.output
    moved = root / "damaged" / victim
    assert reason in json.loads((moved / "reason.json").read_text())["reason"]
    assert ResultsDir(root).check(victim).state == "done"
    assert_kept(before, snapshot(root), redone={victim})
    assert snapshot(root)[victim] != before[victim]
    again = rerun(exp, root)  # and the study is not blocked afterwards
    assert again.exit_code == 0 and f"{N_RUNS} already done" in again.output


def test_report_skips_a_damaged_run_with_its_reason(study):
    exp, root = study
    victim = run_id(root, "nds-s0")
    _truncate(root / "runs" / victim / "logits.npy")
    idx = open_store(root)
    assert victim in dict(idx.skipped) and "logits.npy has" in dict(idx.skipped)[victim]


def test_saving_over_a_valid_twin_is_a_no_op_and_over_a_damaged_one_replaces_it(study):
    from kdfair.spec import RunSpec

    _, root = study
    store = ResultsDir(root)
    rid = run_id(root, "nds-s1")
    spec = RunSpec.from_json(json.loads((root / "runs" / rid / "spec.json").read_text()))
    logits = np.load(root / "runs" / rid / "logits.npy")
    labels, index = np.zeros(len(logits)), np.arange(len(logits))
    before = snapshot(root)
    store.save_run(spec, {"test_acc": 0.0}, logits, labels, index)  # another job finished it
    assert snapshot(root) == before
    _truncate(root / "runs" / rid / "labels.npy")
    store.save_run(spec, {"test_acc": 0.0}, logits, labels, index)
    assert store.check(rid).state == "done" and (root / "damaged" / rid).is_dir()


# --- teachers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [_delete, _truncate])
def test_damaged_teacher_weights_are_retrained_deterministically(study, damage):
    exp, root = study
    teacher = run_id(root, "teacher-s0")
    store = ResultsDir(root)
    sha = store.weights_sha256(teacher)
    students = [r for r in snapshot(root) if not r.startswith("teacher")]
    recorded = {json.loads((root / "runs" / r / "metrics.json").read_text()).get("teacher_sha256")
                for r in students if r.startswith("ds-T2-s0")}
    assert recorded == {sha}  # each DS run records the weights it distilled from
    before = snapshot(root)
    damage(root / "runs" / teacher / "model.safetensors")
    res = rerun(exp, root)
    assert res.exit_code == 0, res.output
    assert store.weights_sha256(teacher) == sha  # same spec, same weights
    assert_kept(before, snapshot(root), redone={teacher})


def test_a_student_whose_teacher_did_not_finish_says_how_to_fix_it(study):
    from kdfair.config import load_experiment
    from kdfair.runner import train_runs
    from kdfair.spec import RunSpec

    exp, root = study
    teacher, student = run_id(root, "teacher-s0"), run_id(root, "ds-T2-s0")
    spec = RunSpec.from_json(json.loads((root / "runs" / student / "spec.json").read_text()))
    shutil.rmtree(root / "runs" / teacher)
    shutil.rmtree(root / "runs" / student)
    train_runs(load_experiment(exp), root, [spec])  # what a worker or a SLURM job does
    err = ResultsDir(root).failed()[student]["error"]
    assert f"its teacher run {teacher} did not finish (it was not trained)" in err
    assert "run `kdfair run` again" in err
    res = rerun(exp, root)
    assert res.exit_code == 0 and ResultsDir(root).is_done(student)


@pytest.mark.parametrize("suffix,payload,expect", [
    (".pt", None, "pickle-based file, which kdfair never opens"),
    (".safetensors", b"\x00garbage" * 10, "is not a readable safetensors file"),
    (".safetensors", None, "not a readable safetensors file"),  # a pickle renamed
])
def test_bad_teacher_checkpoint_is_one_message_and_nothing_is_executed(tmp_path, suffix,
                                                                       payload, expect):
    ckpt = tmp_path / f"teacher{suffix}"
    marker = tmp_path / "pwned"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()  # a pickle that runs a command
    ckpt.write_bytes(payload if payload is not None else evil)
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT.replace("model: {arch: lenet5}\n  train: {epochs: 1, batch_size: "
                                      "64, lr: 0.05}",
                                      f"model: {{arch: lenet5, checkpoint: {ckpt}}}", 1))
    proc = subprocess.run([sys.executable, "-m", "kdfair.cli", "run", str(exp), "--out",
                           str(tmp_path / "out"), "--no-report"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert expect in proc.stderr and str(ckpt) in proc.stderr
    assert "Traceback" not in proc.stderr and "weights_only=False" not in proc.stderr
    assert not marker.exists()


# --- one writer per study -----------------------------------------------------------------------


HOLDER = """
import sys, time
from pathlib import Path
from kdfair.store import study_lock
with study_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_second_run_exits_at_once_with_no_wait_and_waits_without(study):
    exp, root = study
    before = snapshot(root)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), "4"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # another `kdfair run`, in effect
        res = rerun(exp, root, "--no-wait")
        assert res.exit_code == 1 and "another `kdfair run` is writing" in res.output
        t0 = time.monotonic()
        res = rerun(exp, root)
        assert res.exit_code == 0 and "waiting for it to end" in res.output, res.output
        assert time.monotonic() - t0 > 1 and holder.wait(30) == 0
    finally:
        holder.kill()
    assert snapshot(root) == before


# --- every fault is one message -----------------------------------------------------------------


@pytest.mark.parametrize("code,text", [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"),
])
def test_disk_full_read_only_permission_denied_while_saving(study, monkeypatch, code, text):
    import kdfair.store.arrays as arrays

    exp, root = study
    victim = run_id(root, "nds-s0")
    shutil.rmtree(root / "runs" / victim)
    before = snapshot(root)

    def failing_save(f, arr, allow_pickle=False):
        raise OSError(code, "injected", getattr(f, "name", "?"))

    monkeypatch.setattr(arrays.np, "save", failing_save)
    res = rerun(exp, root)
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and text in lines[0] and "logits.npy" in lines[0], res.output
    assert "Traceback" not in res.output and "Finished runs are kept" in res.output
    assert_kept(before, snapshot(root))
    assert not list((root / ".tmp").iterdir())  # nothing half-written left behind
    monkeypatch.undo()
    assert rerun(exp, root).exit_code == 0


def test_disk_full_while_saving_teacher_weights_is_one_message(study, monkeypatch):
    import safetensors.torch

    exp, root = study
    teacher = run_id(root, "teacher-s1")
    (root / "runs" / teacher / "model.safetensors").unlink()
    before = snapshot(root)

    def full(tensors, filename, metadata=None):
        raise safetensors.SafetensorError("Error while serializing: IoError(Os { code: 28, "
                                          "kind: StorageFull, message: \"No space left on "
                                          "device\" })")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    res = rerun(exp, root)
    assert res.exit_code == 1 and "Traceback" not in res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert "model.safetensors" in line and "no space left on the device" in line
    before.pop(teacher)  # the damaged one was moved aside; nothing else is touched
    assert_kept(before, snapshot(root))
    assert teacher not in snapshot(root) and (root / "damaged" / teacher).is_dir()


def test_debug_shows_the_traceback(study, monkeypatch):
    import kdfair.store.arrays as arrays

    exp, root = study
    shutil.rmtree(root / "runs" / run_id(root, "nds-s0"))
    monkeypatch.setattr(arrays.np, "save", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    res = CliRunner().invoke(app, ["--debug", "run", str(exp), "--out", str(root.parent),
                                   "--no-report"])
    assert isinstance(res.exception, OSError)


def test_report_interrupted_by_a_full_disk_leaves_the_previous_report(study, monkeypatch):
    import pandas as pd

    _, root = study
    old = {p.name: p.read_bytes() for p in (root / "report").iterdir()}
    assert old["classwise.csv"]
    calls = {"n": 0}
    real = pd.DataFrame.to_csv

    def to_csv(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    # CPython 3.11.7 failed an ast.parse here (numpy reads every .npy header with
    # ast.literal_eval) with "AST constructor recursion depth mismatch", after the whole
    # suite's allocations and never alone: most likely a garbage collection running
    # finalizers in the middle of it. No collection while the report runs.
    gc.collect()
    gc.disable()
    try:
        res = cli("report", root)
    finally:
        gc.enable()
    assert res.exit_code == 1 and "no space left on the device" in res.output
    assert {p.name: p.read_bytes() for p in (root / "report").iterdir()} == old
    assert not [p for p in root.iterdir() if p.name.startswith(".report")]


def test_corrupt_experiment_json_and_plan_json(study):
    exp, root = study
    before = snapshot(root)
    (root / "experiment.json").write_text("{broken")
    st = cli("status", root)
    assert st.exit_code == 1 and "experiment.json is corrupt" in st.output
    assert "run the study again" in st.output and "Traceback" not in st.output
    res = rerun(exp, root)  # run rewrites it; nothing is redone
    assert res.exit_code == 0, res.output
    assert json.loads((root / "experiment.json").read_text())["name"] == "faults"
    (root / "plan.json").write_text('{"runs": 3}')
    st = cli("status", root)
    assert st.exit_code == 1 and "plan.json is corrupt" in st.output
    assert rerun(exp, root).exit_code == 0 and cli("status", root).exit_code == 0
    assert snapshot(root) == before


@pytest.mark.parametrize("name", ["test_features.npy", "attributes.npz", "data.json"])
def test_truncated_test_set_files_are_regenerated(study, name):
    exp, root = study
    good = (root / name).read_bytes()
    before = snapshot(root)
    _truncate(root / name)
    assert rerun(exp, root).exit_code == 0
    assert (root / name).read_bytes() == good and snapshot(root) == before


def test_truncated_knn_cache_is_rebuilt_and_failed_record_with_odd_fields_is_shown(study):
    _, root = study
    cache = next((root / "analysis_cache").iterdir())
    _truncate(cache)
    (root / "failed").mkdir()
    (root / "failed" / "ds-T9-s0-00000000.json").write_text(json.dumps(
        {"run_id": "ds-T9-s0-00000000", "error": "boom",
         "spec": {"role": "ds", "temperature": "hot", "seed": "x"}}))
    (root / "failed" / "garbage.json").write_text("\x00\x01")
    res = cli("report", root)
    assert res.exit_code == 0, res.output
    with np.load(cache, allow_pickle=False) as z:
        assert "neighbours" in z.files
    import pandas as pd

    failed = pd.read_csv(root / "report" / "failed.csv")
    assert set(failed["run_id"]) == {"ds-T9-s0-00000000", "garbage"}


def test_truncated_trifeature_cache_is_regenerated(tmp_path):
    from kdfair.data import trifeature

    path = tmp_path / "trifeature-x.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    assert trifeature._read(path) is None  # read as missing: generated again


# --- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [("temperatures", "[.inf]"), ("temperatures", "[.nan]"),
                                         ("alpha", ".nan")])
def test_non_finite_distillation_settings_are_refused(tmp_path, field, value):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT.replace("distill: {temperatures: [2]}",
                                      f"distill: {{{field}: {value}}}"))
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1 and f"distill.{field}" in res.output
    assert not (tmp_path / "out").exists()


def test_non_finite_learning_rate_is_refused(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT.replace("lr: 0.003", "lr: .inf"))
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1 and "student.train.lr: lr must be a finite number" in res.output


def test_report_md_escapes_html_from_names_and_labels(study):
    _, root = study
    data = json.loads((root / "data.json").read_text())
    data["notes"] = ["<svg onload=alert(1)> from a <script>loader</script>"]
    (root / "data.json").write_text(json.dumps(sealed(data)))  # as a loader's notes are written
    assert cli("report", root).exit_code == 0
    md = (root / "report" / "report.md").read_text()
    assert "<svg" not in md and "<script>" not in md
    assert "&lt;svg onload=alert(1)> from a &lt;script>loader&lt;/script>" in md  # inert text


# --- exit statuses and half-made directories --------------------------------------------------


def test_run_exits_3_when_runs_failed(tmp_path):
    exp = tmp_path / "e.yaml"  # an lr that makes every student's loss overflow
    exp.write_text(EXPERIMENT.replace("name: faults", "name: diverge")
                   .replace("optimizer: adam, lr: 0.003", "optimizer: sgd, lr: 1.0e+30"))
    res = cli("run", exp, "--out", tmp_path / "out", "--no-report")
    assert res.exit_code == 3, res.output
    assert "2 done, 4 failed, 0 missing" in res.output
    failed = ResultsDir(tmp_path / "out" / "diverge").failed()
    assert all("most likely the learning rate lr=1e+30" in f["error"] for f in failed.values())
    st = cli("status", tmp_path / "out" / "diverge")
    assert st.exit_code == 3 and "4 failed" in st.output


@pytest.mark.parametrize("edit,message", [
    (("device: cpu", "device: cuda"), "cuda"),
    (("model: {arch: lenet5}\n  train: {optimizer", "model: {arch: lenet5, width: 3}\n  train: "
      "{optimizer"), "bad options {'width': 3}"),
])
def test_rejected_device_or_model_option_leaves_no_results_directory(tmp_path, edit, message):
    import torch

    if "cuda" in edit[1] and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    exp = tmp_path / "e.yaml"
    text = EXPERIMENT.replace(*edit)
    assert text != EXPERIMENT
    exp.write_text(text)
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1 and message in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "faults").exists()


def test_done_is_reported_only_after_the_run_is_saved(study):
    from kdfair import api

    exp, root = study
    victim = run_id(root, "nds-s1")
    shutil.rmtree(root / "runs" / victim)
    seen = {}

    class Reporter:
        def start(self, run_id, epochs): ...

        def epoch(self, *a): ...

        def finish(self, run_id, status):
            seen[run_id] = (status, ResultsDir(root).is_done(run_id))

    api.run(exp, out=root.parent, reporter=Reporter(), write_report=False)
    assert seen == {victim: ("done", True)}


def test_runs_record_threads_and_the_report_notes_mixed_settings(study):
    from kdfair.store.index import settings_note

    _, root = study
    idx = open_store(root)
    assert {r.metrics["threads"] for r in idx.runs} == {1}
    assert {r.metrics["device_type"] for r in idx.runs} == {"cpu"}
    assert settings_note(idx.runs) is None
    mixed = [idx.runs[0].__class__(**{**idx.runs[0].__dict__,
                                      "metrics": {**idx.runs[0].metrics, "threads": 2}}),
             *idx.runs[1:]]
    note = settings_note(mixed)
    assert note and "threads=2" in note and "threads=1" in note


def test_float16_logits_change_only_individual_unfairness_and_by_little(study, tmp_path):
    """docs/store.md states the measured change; float16 keeps every prediction."""
    import pandas as pd

    from kdfair.analysis.report import analyze
    from kdfair.store.arrays import float16_keeping_argmax
    from kdfair.store.files import write_manifest

    _, root = study
    half = tmp_path / "half"
    shutil.copytree(root, half)
    for d in (half / "runs").iterdir():
        np.save(d / "logits.npy", float16_keeping_argmax(np.load(d / "logits.npy")))
        write_manifest(d)
        assert np.load(d / "logits.npy").dtype == np.float16
    a, b = analyze(root), analyze(half)
    assert ResultsDir(half).done_ids() == ResultsDir(root).done_ids()
    for name, ta in a.items():
        tb = b[name]
        for col in ta.columns:
            if ta[col].dtype.kind != "f":
                assert ta[col].equals(tb[col]), (name, col)
            elif "individual" in col or "confidence" in col or "pearson" in col \
                    or "spearman" in col:  # computed from probabilities: see the rounding
                np.testing.assert_allclose(tb[col], ta[col], rtol=0, atol=1e-5)
            elif (name == "trends" and col in ("span", "resolution")) or name == "measures":
                # a trend's size, or measures.csv's mean and interval, is in its measure's
                # units: probability-based ones round
                key = ta["quantity"] if name == "trends" else ta["measure"]
                soft = key.isin(["individual", "confidence"]) | key.str.startswith("cf_distance")
                pd.testing.assert_series_equal(ta[col][~soft], tb[col][~soft], check_exact=True)
                np.testing.assert_allclose(tb[col][soft], ta[col][soft], rtol=0, atol=1e-5)
            else:
                pd.testing.assert_series_equal(ta[col], tb[col], check_exact=True)


@pytest.mark.parametrize("payload", [b"\x00garbage", b"cos\nsystem\n(S'true'\ntR."])
def test_bad_file_in_the_torch_hub_cache_is_one_message(tmp_path, monkeypatch, payload):
    import torch

    from kdfair.errors import ConfigError
    from kdfair.models.registry import build_model
    from kdfair.models.torchvision_models import hub_file

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    path = hub_file("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    with pytest.raises(ConfigError) as e:
        build_model("resnet18", 1000, (3, 224, 224), weights="IMAGENET1K_V1")
    msg = str(e.value)
    assert str(path) in msg and "not a readable weights file" in msg
    assert "weights_only=False" not in msg


@pytest.mark.parametrize("update,expect", [
    ({"role": "ds", "temperature": 50.0, "alpha": 0.8, "t2_scaling": True}, "temperature T=50"),
    ({"role": "ds", "temperature": 0.1, "alpha": 0.8, "t2_scaling": True}, "temperature T=0.1"),
    ({"role": "ds", "temperature": 4.0, "alpha": 1.0, "t2_scaling": True}, "alpha=1"),
    ({"role": "ds", "temperature": 4.0, "alpha": 0.8, "t2_scaling": True,
      "train": {"lr": 5.0}}, "learning rate lr=5, high for sgd"),
    ({"role": "nds", "train": {"lr": 0.05, "optimizer": "adam"}}, "high for adam"),
    ({"role": "nds", "train": {"lr": 0.001, "optimizer": "adam"}}, "learning rate lr=0.001"),
])
def test_nan_loss_hint_names_the_likely_setting(update, expect):
    from kdfair.spec import RunSpec
    from kdfair.train.diagnose import nonfinite_loss_hint

    base = {"experiment": "e", "arch": "lenet5", "seed": 0, "train": {"lr": 0.1},
            "dataset": {}, "data_fingerprint": "f"}
    assert expect in nonfinite_loss_hint(RunSpec(**{**base, **update}))
