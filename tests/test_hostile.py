"""Hostile and careless input (issue 22): what a user types or a file holds never crashes the
console, hangs the machine, writes outside the study, fabricates a number or blocks a study for
good. Each case checks the message, the exit status, and that nothing outside the results
directory changed.

A tiny digits study (6 runs) is built once per module through the command line; every case works
on its own copy. Audits are made from small arrays written here.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_faults import EXPERIMENT, cli, run_id

from kdfair.errors import StoreError
from kdfair.store import ResultsDir
from kdfair.store.files import sealed

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
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


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under ``root`` (links not followed)."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def one_line(output: str) -> str:
    """The error line of a failed command (and that there is exactly one, no traceback)."""
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


BOMB = ("[&a [x,x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
        "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
        "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e], "
        "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g], "
        "&i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]]")  # 10^9 values from 400 bytes


# --- audits made here --------------------------------------------------------------------------


def write_audit(d: Path, n: int = 48, k: int = 3, temps=(2,), **extra) -> Path:
    """A predictions YAML of a small audit (teacher, NDS, DS at ``temps``; 2 seeds each)."""
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    y = np.arange(n) % k
    np.save(d / "labels.npy", y)

    def pred(name: str, acc: float) -> str:
        logits = rng.normal(size=(n, k)).astype(np.float32)
        right = rng.random(n) < acc
        logits[np.arange(n)[right], y[right]] += 5
        np.save(d / f"{name}.npy", logits)
        return f"{name}.npy"

    np.savez(d / "groups.npz", sex=np.arange(n) % 2)
    spec = {"name": "aud", "labels": "labels.npy", "groups": "groups.npz",
            "group_names": {"sex": ["f", "m"]},
            "teacher": [pred("t0", .9), pred("t1", .9)], "nds": [pred("n0", .7), pred("n1", .7)],
            "ds": {t: [pred(f"d{t}s0", .8), pred(f"d{t}s1", .8)] for t in temps}, **extra}
    p = d / "predictions.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


# --- 4. YAML alias bombs are bounded -----------------------------------------------------------


@pytest.mark.parametrize("setting", ["teacher.model.foo", "engine"])
def test_an_alias_bomb_in_set_is_refused_at_once(tmp_path, setting):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT)
    t0 = time.perf_counter()
    res = cli("run", exp, "--out", tmp_path / "out", "--set", f"{setting}={BOMB}")
    assert time.perf_counter() - t0 < 5
    assert res.exit_code == 1
    line = one_line(res.output)
    assert f"--set {setting}: the value of {len(BOMB)} characters" in line
    assert "aliases (*name) expand to more than 100000 values" in line
    assert not (tmp_path / "out").exists()


def test_an_alias_bomb_in_an_experiment_or_predictions_file_is_refused(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT + f"bomb: {BOMB}\n")
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1 and f"{exp}: its aliases (*name) expand" in one_line(res.output)
    preds = write_audit(tmp_path / "a")
    for key in ("distill", "teacher_arch"):
        data = yaml.safe_load(preds.read_text())
        text = yaml.safe_dump({k: v for k, v in data.items() if k != key})
        preds.write_text(text + f"{key}: {{alpha: {BOMB}}}\n" if key == "distill"
                         else text + f"{key}: {BOMB}\n")
        t0 = time.perf_counter()
        res = cli("audit", preds, "--out", tmp_path / "out")
        assert time.perf_counter() - t0 < 5
        assert res.exit_code == 1 and "aliases (*name) expand" in one_line(res.output)
    assert not (tmp_path / "out").exists()


def test_an_oversized_or_broken_experiment_file_is_refused_without_its_content(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT + "# " + "SECRET" * 200_000 + "\n")
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1 and "SECRET" not in res.output
    assert f"{exp} has {len(EXPERIMENT) + 1_200_003} bytes, more than the 1048576 this file " \
        "may hold" in one_line(res.output)
    exp.write_text(EXPERIMENT + "seeds: [0, 1\nSECRET: {x: ]\n")
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1 and "SECRET" not in res.output
    assert f"{exp} is not valid YAML (" in one_line(res.output) and "line " in res.output
    assert not (tmp_path / "out").exists()


def test_a_few_aliases_are_still_read(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT.replace("  train: {epochs: 1, batch_size: 64, lr: 0.05}",
                                      "  train: &t {epochs: 1, batch_size: 64, lr: 0.05}"))
    from kdfair.config import load_experiment

    assert load_experiment(exp).teacher.train.lr == 0.05


# --- 12. unbounded reads -------------------------------------------------------------------------


def test_a_store_json_file_linked_to_a_device_is_not_read(study):
    _, root = study
    for name in ("data.json", "plan.json"):
        (root / name).unlink()
        (root / name).symlink_to("/dev/zero")
    res = cli("status", root)
    assert res.exit_code == 1
    assert f"{root / 'plan.json'} is not a regular file" in one_line(res.output)
    res = cli("report", root)  # data.json is derived: the report says it is unknown
    assert res.exit_code == 0, res.output
    md = (root / "report" / "report.md").read_text()
    assert f"data.json does not parse ({root / 'data.json'} is not a regular file" in md


def test_an_oversized_store_json_file_is_refused_without_its_content(study, monkeypatch):
    import kdfair.reading

    _, root = study
    monkeypatch.setattr(kdfair.reading, "MAX_JSON_BYTES", 4000)
    monkeypatch.setattr("kdfair.store.files.MAX_JSON_BYTES", 4000)
    (root / "plan.json").write_text(json.dumps({"runs": ["SECRET" * 1000]}))
    res = cli("status", root)
    assert res.exit_code == 1
    line = one_line(res.output)
    assert f"{root / 'plan.json'} has 6014 bytes, more than the 4000" in line
    assert "SECRET" not in res.output


def test_a_huge_csv_audit_is_refused_naming_it_without_its_content(tmp_path, monkeypatch):
    import kdfair.auditing

    preds = write_audit(tmp_path / "a")
    (tmp_path / "a" / "d2s1.csv").write_text("pred" + "A" * 5000 + "\n" + "B" * 5000 + "\n")
    data = yaml.safe_load(preds.read_text())
    data["ds"][2][1] = "d2s1.csv"
    preds.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(kdfair.auditing, "MAX_CSV_BYTES", 4096)
    res = cli("audit", preds, "--out", tmp_path / "out")
    assert res.exit_code == 1
    line = one_line(res.output)
    assert f"{tmp_path / 'a' / 'd2s1.csv'} has 10006 bytes, more than the 4096" in line
    assert "AAAAA" not in res.output
    monkeypatch.setattr(kdfair.auditing, "MAX_CSV_BYTES", 64 << 20)
    res = cli("audit", preds, "--out", tmp_path / "out")  # read: its column is named in brief
    assert res.exit_code == 1 and "AAAAAAAAAA" * 5 not in res.output
    assert "d2s1.csv): 1 rows for 48 labels" in one_line(res.output)


# --- 14. undecodable files, NaN values ---------------------------------------------------------


def test_a_non_utf8_experiment_file_is_named(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_bytes(EXPERIMENT.encode() + b"# caf\xe9\n")
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 1
    assert f"{exp} is not UTF-8 text" in one_line(res.output)


def test_a_nan_temperature_shows_the_value(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT)
    res = cli("run", exp, "--out", tmp_path / "out", "--set", "distill.temperatures=[.nan]")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "\n  distill.temperatures: temperatures must be > 0; got [nan]\n" in res.output


# --- 2. messages are never parsed as console markup ----------------------------------------------

MARKUP = "r[bold]x[/]y[nan]"


def test_markup_in_a_set_value_or_a_path_is_printed_verbatim(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT)
    res = cli("run", exp, "--out", tmp_path / "out", "--set", f"name={MARKUP}")
    assert res.exit_code == 1 and f"--set name={MARKUP}:" in one_line(res.output)
    assert f"name {MARKUP!r} is not allowed" in res.output
    res = cli("status", tmp_path / MARKUP)
    assert res.exit_code == 1 and str(tmp_path / MARKUP) in one_line(res.output)
    res = cli("run", exp, "--out", tmp_path / "out", "--set", "tracking=tensorboard",
              "--set", "teacher.train.lr=[/]")
    assert res.exit_code == 1 and "teacher.train.lr" in one_line(res.output)
    assert "MarkupError" not in res.output


def test_markup_in_run_ids_and_output_paths_is_printed_verbatim(study, tmp_path, monkeypatch):
    import sys

    _, root = study
    plan = json.loads((root / "plan.json").read_text())
    (root / "plan.json").write_text(json.dumps({"runs": [*plan["runs"], "x[/]y[bold]z"]}))
    res = cli("status", root)
    assert res.exit_code == 3 and "x[/]y[bold]z" in res.output, res.output
    out = tmp_path / f"ex{MARKUP}"
    rid = plan["runs"][0]
    res = cli("export", root, rid, "--out", out)
    assert res.exit_code == 0 and f"wrote {out / rid}.safetensors" in res.output, res.output
    moved = tmp_path / f"o{MARKUP}"
    shutil.copytree(root.parent, moved, symlinks=True)
    res = cli("run", root.parent.parent / "faults.yaml", "--out", moved, "--no-report")
    assert res.exit_code == 0 and f"→ {moved / 'faults'}" in res.output, res.output
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    res = cli("run", root.parent.parent / "faults.yaml", "--out", root.parent,
              "--set", "tracking=tensorboard")
    assert res.exit_code == 1 and 'pip install "kdfair[tracking]"' in one_line(res.output)
    res = cli("report", tmp_path / MARKUP)
    assert res.exit_code == 1 and str(tmp_path / MARKUP) in one_line(res.output)
    res = cli("audit", tmp_path / f"{MARKUP}.yaml")
    assert res.exit_code == 1 and f"{MARKUP}.yaml" in one_line(res.output)


# --- 1. no writing through symlinks inside a results directory -----------------------------------


@pytest.mark.parametrize("link", ["report", "analysis_cache"])
def test_a_symlinked_report_or_cache_folder_is_refused(study, tmp_path, link):
    _, root = study
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(root / link, ignore_errors=True)
    (root / link).symlink_to(elsewhere)
    before = tree(tmp_path / "out")
    res = cli("report", root)
    assert res.exit_code == 1
    assert f"{root / link} is a symbolic link (to {elsewhere}, outside the results directory); " \
        "kdfair writes nothing through links" in one_line(res.output)
    assert list(elsewhere.iterdir()) == []
    assert not list(root.glob(".report-*"))  # its temporary directory is gone too
    assert {k: v for k, v in tree(tmp_path / "out").items()} == before


def test_symlinked_failed_and_damaged_folders_are_refused(study, tmp_path):
    exp, root = study
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for link in ("failed", "damaged"):
        (root / link).symlink_to(elsewhere)
    store = ResultsDir(root)
    rid = run_id(root, "nds-")
    with pytest.raises(StoreError, match="failed is a symbolic link"):
        store.record_failure(store.load_spec(rid), "boom")
    (root / "runs" / rid / "labels.npy").write_bytes(b"x")  # damaged: run moves it aside
    res = cli("run", exp, "--out", root.parent, "--no-report")
    assert res.exit_code == 1
    assert f"{root / 'damaged'} is a symbolic link" in one_line(res.output)
    assert list(elsewhere.iterdir()) == []
    assert (root / "runs" / rid / "spec.json").exists()  # nothing lost


# --- 3. audits write stores that status and a re-run see as done ---------------------------------


def test_an_audit_is_done_for_status_and_a_second_audit(tmp_path):
    preds = write_audit(tmp_path / "a")
    res = cli("audit", preds, "--out", tmp_path / "out", "--no-report")
    assert res.exit_code == 0, res.output
    root = tmp_path / "out" / "aud"
    res = cli("status", root)
    assert res.exit_code == 0, res.output
    assert "6 done" in res.output and "damaged" not in res.output
    before = tree(root / "runs")
    res = cli("audit", preds, "--out", tmp_path / "out", "--no-report")
    assert res.exit_code == 0, res.output
    assert not (root / "damaged").exists() and tree(root / "runs") == before


# --- 5. runs are sealed both ways ----------------------------------------------------------------


def test_an_unlisted_file_makes_a_run_damaged_and_is_never_read(study):
    _, root = study
    rid = run_id(root, "ds-")
    logits = np.load(root / "runs" / rid / "logits.npy")
    np.save(root / "runs" / rid / "counterfactual-evil.npy", logits)
    res = cli("status", root)
    assert res.exit_code == 3 and "5 done, 1 damaged" in res.output
    assert ResultsDir(root).check(rid).reason == \
        "counterfactual-evil.npy is not listed in manifest.json"
    res = cli("report", root)
    assert res.exit_code == 0, res.output
    md = (root / "report" / "report.md").read_text()
    assert "evil" not in md.replace("counterfactual-evil.npy is not listed", "")
    assert "counterfactual-evil.npy is not listed in manifest.json" in md  # skipped, with why


def test_what_a_file_manager_leaves_in_a_run_keeps_it_done(study):
    """Thumbs.db, desktop.ini and .DS_Store are never read: a run that a file manager showed
    stays done (not moved aside and trained again); resealing the run does not list them, so
    deleting them later does not unseal it either."""
    _, root = study
    rid = run_id(root, "ds-")
    for name in ("Thumbs.db", "desktop.ini", ".DS_Store"):
        (root / "runs" / rid / name).write_bytes(b"\x00junk")
    assert ResultsDir(root).check(rid).state == "done"
    res = cli("status", root)
    assert res.exit_code == 0 and "damaged" not in res.output, res.output
    from kdfair.store.files import write_manifest

    assert not {"Thumbs.db", "desktop.ini", ".DS_Store"} & set(
        write_manifest(root / "runs" / rid)["files"])
    (root / "runs" / rid / "Thumbs.db").unlink()
    assert ResultsDir(root).check(rid).state == "done"
    (root / "runs" / rid / "thumbs.db.npy").write_bytes(b"\x00junk")  # not one of those names
    assert ResultsDir(root).check(rid).reason == "thumbs.db.npy is not listed in manifest.json"


# --- 10. a stray folder under runs/ --------------------------------------------------------------


def test_a_stray_folder_under_runs_is_ignored_with_a_warning(study):
    exp, root = study
    (root / "runs" / "old copy").mkdir()
    (root / "runs" / "old copy" / "notes.txt").write_text("mine")
    res = cli("status", root)
    assert res.exit_code == 0, res.output
    assert f"{root / 'runs' / 'old copy'} is not a run" in res.output
    before = snapshot_runs(root)
    res = cli("run", exp, "--out", root.parent)
    assert res.exit_code == 0, res.output
    assert snapshot_runs(root) == before and (root / "report" / "report.md").exists()
    assert (root / "runs" / "old copy" / "notes.txt").read_text() == "mine"


def snapshot_runs(root: Path) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in tree(root / "runs").items() if "/" in k}


# --- 15. report/manifest.json is confined to report/ ---------------------------------------------


def test_a_report_manifest_naming_other_paths_removes_nothing_outside(study):
    _, root = study
    assert cli("report", root).exit_code == 0
    keep = root / "keep.txt"
    keep.write_text("mine")
    (root / "report" / "manifest.json").write_text(json.dumps(
        {"files": ["..", "../keep.txt", "/etc/passwd", "report.md", "."]}))
    res = cli("report", root)
    assert res.exit_code == 0, res.output
    assert keep.read_text() == "mine" and (root / "report" / "report.md").exists()
    assert json.loads((root / "report" / "manifest.json").read_text())["files"][-1] == \
        "manifest.json"


def test_a_temporary_report_directory_left_by_a_killed_report_is_removed(study):
    import os

    _, root = study
    old, fresh = root / ".report-killed", root / ".report-running"
    for d in (old, fresh):
        d.mkdir()
        (d / "report.md").write_text("half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert cli("report", root).exit_code == 0
    assert not old.exists() and fresh.exists()  # another report may be writing that one


# --- 13. a full disk names the file --------------------------------------------------------------


def test_a_short_write_names_the_file_and_the_full_disk(study, monkeypatch):
    import kdfair.store.arrays as arrays

    exp, root = study
    victim = run_id(root, "nds-s0")
    shutil.rmtree(root / "runs" / victim)

    def short_save(f, arr, allow_pickle=False):  # what numpy raises when the disk fills
        raise OSError("138240 requested and 72672 written")

    monkeypatch.setattr(arrays.np, "save", short_save)
    res = cli("run", exp, "--out", root.parent, "--no-report")
    assert res.exit_code == 1
    line = one_line(res.output)
    assert "logits.npy: no space left on the device" in line and ".tmp" in line
    assert not list((root / ".tmp").iterdir())


def test_a_failed_export_leaves_no_partial_file(study, tmp_path, monkeypatch):
    import kdfair.export

    _, root = study
    rid = run_id(root, "teacher-s0")

    def full(src, dst):
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(kdfair.export.shutil, "copyfile", full)
    res = cli("export", root, rid, "--out", tmp_path / "exp")
    assert res.exit_code == 1 and "no space left on the device" in one_line(res.output)
    assert list((tmp_path / "exp").iterdir()) == []


# --- 6. a checkpoint that cannot fit is refused before training -----------------------------------


def test_a_checkpoint_that_does_not_fit_the_architecture_is_refused_before_training(tmp_path):
    import torch
    from safetensors.torch import save_file

    from kdfair.models.registry import build_model

    good = build_model("lenet5", 4, (1, 16, 16)).state_dict()  # digits has 10 classes
    cases = {"classes.safetensors": ({k: v.contiguous() for k, v in good.items()},
                                     "of another shape (e.g. "),
             "keys.safetensors": ({"weight": torch.zeros(3)},
                                  "1 unexpected (e.g. weight)")}
    for name, (state, expect) in cases.items():
        ckpt = tmp_path / name
        save_file(state, str(ckpt))
        exp = tmp_path / "e.yaml"
        exp.write_text(EXPERIMENT.replace("model: {arch: lenet5}\n  train: {epochs: 1, "
                                          "batch_size: 64, lr: 0.05}",
                                          f"model: {{arch: lenet5, checkpoint: {ckpt}}}", 1))
        res = cli("run", exp, "--out", tmp_path / "out", "--no-report")
        assert res.exit_code == 1, res.output
        line = one_line(res.output)
        assert f"teacher checkpoint {ckpt} does not fit model 'lenet5'" in line
        assert expect in line and "run again" not in line
        assert not (tmp_path / "out" / "faults" / "runs").exists()


# --- 16. no unsafe advice -------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickled_hugging_face_model_is_refused_without_unsafe_advice(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from transformers import BertConfig

    from kdfair.errors import ConfigError
    from kdfair.models.registry import build_model

    d, marker = tmp_path / "hf", tmp_path / "pwned"
    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=16, num_labels=2).save_pretrained(d)
    torch.save({"x": _Evil(marker)}, d / "pytorch_model.bin")
    with pytest.raises(ConfigError) as err:
        build_model("hf", 2, (), pretrained=str(d))
    assert f"model.pretrained: {str(d)!r} holds pickle-based weights" in str(err.value)
    assert "kdfair never unpickles them" in str(err.value)
    assert "weights_only=False" not in str(err.value) and not marker.exists()


# --- 9. T = inf is refused in audits --------------------------------------------------------------


@pytest.mark.parametrize("t", [float("inf"), float("nan")])
def test_an_audit_with_a_non_finite_temperature_is_refused(tmp_path, t):
    preds = write_audit(tmp_path / "a")
    data = yaml.safe_load(preds.read_text())
    data["ds"] = {t: data["ds"][2]}
    preds.write_text(yaml.safe_dump(data))
    res = cli("audit", preds, "--out", tmp_path / "out")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "temperatures must be" in res.output and f"got {t}" in res.output, res.output
    assert not (tmp_path / "out" / "aud" / "runs").exists()


# --- 8. an attribute whose every input is unknown -----------------------------------------------


def test_an_attribute_with_every_group_unknown_is_skipped_with_a_note(tmp_path):
    preds = write_audit(tmp_path / "a")
    n = 48
    np.savez(tmp_path / "a" / "groups.npz", sex=np.arange(n) % 2, age=-np.ones(n, dtype=int))
    data = yaml.safe_load(preds.read_text())
    data["group_names"] = {"sex": ["f", "m"], "age": ["young", "old"]}
    preds.write_text(yaml.safe_dump(data))
    res = cli("audit", preds, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    md = (tmp_path / "out" / "aud" / "report" / "report.md").read_text()
    assert "- attribute 'age': the group of every test input is unknown (-1); it is skipped." in md
    assert "DPD age" not in md and "DPD sex" in md


# --- 3. data.json and plan.json sealed: an edit is seen, never read as good ------------------


def test_an_edited_data_json_or_plan_json_is_refused_not_read(study):
    """Swapping two class names in data.json (same size) would put every class-wise result under
    the wrong name; the seal sees it, the report refuses, and `kdfair run` writes it anew."""
    _, root = study
    good = (root / "data.json").read_text()
    data = json.loads(good)
    names = data["class_names"]
    names[0], names[1] = names[1], names[0]
    (root / "data.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    res = cli("report", root)
    assert res.exit_code == 1
    assert ("data.json was edited after kdfair wrote it (its content does not match its seal); "
            "run `kdfair run`") in one_line(res.output)
    (root / "data.json").write_text(good)
    plan = json.loads((root / "plan.json").read_text())
    plan["runs"] = plan["runs"][1:]
    (root / "plan.json").write_text(json.dumps(plan))
    res = cli("status", root)
    assert res.exit_code == 1
    assert "plan.json was edited after kdfair wrote it" in one_line(res.output)


# --- 11. report.md and the CSVs keep names as text ------------------------------------------------


def test_names_cannot_make_links_headings_or_spreadsheet_formulas(study):
    import pandas as pd

    _, root = study
    data = json.loads((root / "data.json").read_text())
    evil = ["[x](javascript:alert(1))", "a\n# Injected", "=cmd|' /C calc'!A0", "@SUM(A1)",
            "-2+3+cmd|' /C calc'!A0"]
    data["class_names"][:len(evil)] = evil
    data["notes"] = ["[ref]: javascript:alert(2)", "see [x](javascript:alert(1))",
                     "a\n# Injected", "# also"]
    # names a user gave (an audit's class names): data.json sealed as kdfair writes it
    (root / "data.json").write_text(json.dumps(sealed(data)))
    assert cli("report", root).exit_code == 0
    md = (root / "report" / "report.md").read_text()
    assert "](javascript" not in md and "]: javascript" not in md
    assert "[x]\\(javascript:alert(1))" in md  # shown, links nowhere
    assert not [ln for ln in md.splitlines() if ln.startswith(("# Injected", "# also"))]
    assert "- a # Injected" in md and "- \\# also" in md
    classes = pd.read_csv(root / "report" / "class_accuracy.csv")
    names = list(classes["class_name"].drop_duplicates())
    assert names[2:5] == ["'=cmd|' /C calc'!A0", "'@SUM(A1)", "'-2+3+cmd|' /C calc'!A0"]
    assert names[5:] == data["class_names"][5:]
    assert classes["acc_mean"].dtype == float  # numbers stay numbers
    for f in (root / "report").glob("*.csv"):  # only the injected names were quoted
        quoted = [ln for ln in f.read_text().splitlines() if ",'" in ln or ln.startswith("'")]
        assert all("cmd|" in ln or "SUM(A1)" in ln for ln in quoted), (f.name, quoted)


# --- 7. a study whose runs all failed ends with a report of its failures ------------------------


def test_a_study_whose_every_run_failed_reports_its_failures_and_exits_3(tmp_path):
    exp = tmp_path / "e.yaml"  # an lr that makes every loss overflow, teachers' and students'
    exp.write_text(EXPERIMENT.replace("name: faults", "name: allfail")
                   .replace("optimizer: adam, lr: 0.003", "optimizer: sgd, lr: 1.0e+30")
                   .replace("train: {epochs: 1, batch_size: 64, lr: 0.05}",
                            "train: {epochs: 1, batch_size: 64, lr: 1.0e+30}"))
    res = cli("run", exp, "--out", tmp_path / "out")
    assert res.exit_code == 3, res.output
    assert "0 done, 6 failed, 0 missing" in res.output
    assert "run `kdfair run` first" not in res.output and "error:" not in res.output
    root = tmp_path / "out" / "allfail"
    md = (root / "report" / "report.md").read_text()
    assert "No run of this study finished: 6 failed and 0 were skipped" in md
    failed = (root / "report" / "failed.csv").read_text()
    assert failed.count("\n") == 7 and "most likely the learning rate" in failed
    assert "did not finish" in failed  # the students of the failed teachers


# --- also seen: kdfair report verifies digests ----------------------------------------------------


def test_report_never_reads_a_same_size_edit_as_good(study):
    _, root = study
    rid = run_id(root, "ds-")
    spec = root / "runs" / rid / "spec.json"
    text = spec.read_text()
    assert '"temperature": 2.0' in text
    spec.write_text(text.replace('"temperature": 2.0', '"temperature": 8.0'))  # same size
    res = cli("report", root)
    assert res.exit_code == 0, res.output
    md = (root / "report" / "report.md").read_text()
    assert "T = 8" not in md and "spec.json does not match its SHA-256 in manifest.json" in md


def test_edited_or_added_test_set_files_are_not_analysed_and_run_rewrites_them(study):
    exp, root = study
    feats = np.load(root / "test_features.npy")
    feats[0, 0] += 1.0  # same size, other numbers
    np.save(root / "test_features.npy", feats)
    res = cli("report", root)
    assert res.exit_code == 1
    assert "test_features.npy does not match its SHA-256 in data.json" in one_line(res.output)
    before = snapshot_runs(root)
    assert cli("run", exp, "--out", root.parent, "--no-report").exit_code == 0
    assert snapshot_runs(root) == before  # only the test-set files were written again
    assert cli("report", root).exit_code == 0
    np.savez(root / "counterfactuals.npz", index=np.arange(3), colour=np.zeros(3, int))
    res = cli("report", root)
    assert res.exit_code == 1
    assert "counterfactuals.npz is not listed in data.json" in one_line(res.output)


# --- 1. (continued) TensorBoard curves and SLURM files are never written through a link ---------


def test_tensorboard_curves_are_not_written_or_removed_through_a_link(tmp_path, caplog):
    from kdfair import tracking

    root, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    (elsewhere / "r1").mkdir(parents=True)
    (elsewhere / "r1" / "keep.txt").write_text("mine")
    root.mkdir()
    (root / "tensorboard").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="tensorboard is a symbolic link"):
        tracking.write_run(root, "r1", [{"epoch": 1, "loss": 0.5}])
    assert tracking.record_run({"tracking": "tensorboard"}, root, "r1",
                               {"history": [{"epoch": 1, "loss": 0.5}]}) is None
    assert "tensorboard curves of r1 not written" in caplog.text  # logged, the run is safe
    assert [p.name for p in elsewhere.rglob("*")] == ["r1", "keep.txt"]
    assert (elsewhere / "r1" / "keep.txt").read_text() == "mine"


def test_slurm_files_are_not_written_through_a_link(tmp_path, monkeypatch):
    from kdfair.config import load_experiment
    from kdfair.executors import slurm

    root, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "slurm").symlink_to(elsewhere)
    monkeypatch.setattr(slurm, "_slurm", lambda args: pytest.fail(f"submitted {args}"))
    ex = slurm.SlurmExecutor()
    with pytest.raises(StoreError, match="slurm is a symbolic link"):
        ex._probe(load_experiment("demo"), root)  # the check job: nothing submitted
    with pytest.raises(StoreError, match="slurm is a symbolic link"):
        ex._executor(root, 0, "kdfair-demo-teachers")  # the jobs' folder
    assert list(elsewhere.iterdir()) == []


def test_the_report_spinner_shows_a_path_with_markup_verbatim():
    import io

    from rich.console import Console

    from kdfair.progress import _Elapsed

    spinner, out = _Elapsed(), io.StringIO()
    spinner.show("report: opening results/a[/]b[bold]c")  # what `kdfair report PATH` shows
    Console(file=out, force_terminal=True, width=200).print(spinner)
    assert "report: opening results/a[/]b[bold]c…" in out.getvalue()


def test_yaml_nested_thousands_deep_is_refused_in_one_line(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text(EXPERIMENT)
    deep = "[" * 3000 + "]" * 3000
    res = cli("run", exp, "--out", tmp_path / "out", "--set", f"teacher.model.foo={deep}")
    assert res.exit_code == 1 and not (tmp_path / "out").exists()
    line = one_line(res.output)
    assert "--set teacher.model.foo: the value of 6000 characters: nested too deeply" in line
    assert "unexpected" not in line and "RecursionError" not in res.output


def test_a_slurm_job_list_linked_to_a_device_is_not_read(tmp_path):
    from analysis_fixtures import write_store

    root = write_store(tmp_path / "q" / "toy", num_classes=3, n_per_class=20, seeds=(0, 1),
                       temperatures=(2.0,), features=False, name="toy")
    (root / "plan.json").write_text(json.dumps({"runs": sorted(
        p.name for p in (root / "runs").iterdir())}))
    (root / "slurm").mkdir()
    (root / "slurm" / "jobs.jsonl").symlink_to("/dev/zero")
    t0 = time.perf_counter()
    res = cli("status", root)
    assert time.perf_counter() - t0 < 10 and res.exit_code == 1
    assert f"{root / 'slurm' / 'jobs.jsonl'} is not a regular file" in one_line(res.output)
    assert "it lists this study's SLURM jobs" in res.output


def test_a_counterfactual_file_added_to_a_run_of_the_release_before_manifests_is_not_read(
        tmp_path):
    import pandas as pd
    from analysis_fixtures import write_store

    import kdfair

    root = write_store(tmp_path / "toy", num_classes=3, n_per_class=20, seeds=(0, 1),
                       temperatures=(2.0,), features=False, attributes={"colour": ["r", "b"]})
    clean = kdfair.analyze(root)["summary"]
    for d in (root / "runs").iterdir():  # predictions.npz, no manifest: the older format
        with np.load(d / "predictions.npz") as z:
            np.save(d / "counterfactual-evil.npy", z["logits"][::-1].copy())
    summary = kdfair.analyze(root)["summary"]
    assert not [c for c in summary.columns if "evil" in c]
    pd.testing.assert_frame_equal(summary, clean)


def test_a_dangling_link_in_a_run_makes_it_damaged_not_the_command_fail(study, tmp_path):
    _, root = study
    rid = run_id(root, "nds-")
    (root / "runs" / rid / "notes").symlink_to(tmp_path / "gone")
    res = cli("status", root)
    assert res.exit_code == 3 and "error:" not in res.output, res.output
    assert "5 done, 1 damaged" in res.output
    assert ResultsDir(root).check(rid).reason == "notes is not listed in manifest.json"
    res = cli("report", root)
    assert res.exit_code == 0, res.output
    assert "notes is not listed in manifest.json" in (root / "report" / "report.md").read_text()


@pytest.mark.parametrize("terminal", [False, True])
def test_the_slurm_view_shows_a_results_path_with_markup_verbatim(terminal):
    import io

    from rich.console import Console

    from kdfair.executors.slurm_view import RichSlurmView

    out = io.StringIO()
    view = RichSlurmView(Console(file=out, force_terminal=terminal, width=200))
    with view:  # the check job's note names the results directory
        view.update("check", [], note="a job test-writes results/a[/]b[bold]c")
    assert "ajobtest-writesresults/a[/]b[bold]c" in "".join(out.getvalue().split())
