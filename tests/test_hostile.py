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
from test_faults import EXPERIMENT, cli

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


def test_markup_in_run_ids_and_output_paths_is_printed_verbatim(study, tmp_path):
    import kdfair.tracking

    _, root = study
    plan = json.loads((root / "plan.json").read_text())
    (root / "plan.json").write_text(json.dumps({"runs": [*plan["runs"], "x[/]y[bold]z"]}))
    res = cli("status", root)
    assert res.exit_code == 3 and "x[/]y[bold]z" in res.output, res.output
    out = tmp_path / f"ex{MARKUP}"
    rid = plan["runs"][0]
    res = cli("export", root, rid, "--out", out)
    assert res.exit_code == 0 and f"wrote {out / rid}.safetensors" in res.output, res.output
    try:
        kdfair.tracking.check_available()
        return
    except Exception as err:  # noqa: BLE001 - TensorBoard is not installed: its hint is shown
        assert 'pip install "kdfair[tracking]"' in str(err)
    res = cli("run", root.parent.parent / "faults.yaml", "--out", root.parent,
              "--set", "tracking=tensorboard")
    assert res.exit_code == 1 and 'pip install "kdfair[tracking]"' in one_line(res.output)
