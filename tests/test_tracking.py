"""TensorBoard tracking: event files per run id, read back with tensorboard's own reader; the
learning-curve figures per role."""

import json
import math
from dataclasses import dataclass, field

import pytest

from kdfair import tracking
from kdfair.curves import curves_by_role, write_learning_curves
from kdfair.errors import ConfigError

pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


HISTORY = [{"epoch": 1, "loss": 2.0, "train_acc": 0.25, "lr": 0.1, "images_per_s": 10.0},
           {"epoch": 2, "loss": 1.5, "train_acc": 0.5, "lr": 0.05, "val_acc": 0.4}]


def test_event_files_hold_the_history(tmp_path):
    where = tracking.write_run(tmp_path, "nds-s0-abcd", HISTORY)
    assert where == tmp_path / "tensorboard" / "nds-s0-abcd"
    got = read_scalars(where)
    assert got["train/loss"] == [(1, 2.0), (2, 1.5)]
    assert got["train/accuracy"] == [(1, 0.25), (2, 0.5)]
    assert [(s, pytest.approx(v)) for s, v in got["train/lr"]] == [(1, 0.1), (2, 0.05)]
    assert [(s, pytest.approx(v)) for s, v in got["val/accuracy"]] == [(2, 0.4)]  # epoch 1 lacks
    tracking.write_run(tmp_path, "nds-s0-abcd", HISTORY[:1])  # rewritten, not appended
    assert read_scalars(where)["train/loss"] == [(1, 2.0)]


def test_only_when_asked_and_a_missing_package_is_one_message(tmp_path, monkeypatch):
    assert tracking.record_run({"tracking": "none"}, tmp_path, "r", {"history": HISTORY}) is None
    assert not (tmp_path / "tensorboard").exists()
    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r'pip install "kdfair\[tracking\]"'):
        tracking.check_available()
    # at save time a failure is logged, never raised: the run is already in the store
    assert tracking.record_run({"tracking": "tensorboard"}, tmp_path, "r", {"history": []}) \
        is None


@dataclass
class FakeRun:
    role: str
    seed: int
    temperature: float = math.nan
    metrics: dict = field(default_factory=dict)


def test_learning_curves_one_figure_per_role(tmp_path):
    runs = [FakeRun("teacher", 0, metrics={"history": HISTORY}),
            FakeRun("nds", 0, metrics={"history": HISTORY}),
            FakeRun("ds", 0, 2.0, {"history": HISTORY}),
            FakeRun("ds", 0, 8.0, {"history": HISTORY}),
            FakeRun("teacher", 1, metrics={"history": []})]  # e.g. a given teacher: no curve
    assert [len(v) for v in curves_by_role(runs).values()] == [1, 1, 2]
    written = write_learning_curves(runs, tmp_path, formats=("png", "svg"))
    assert set(written) == {"teacher", "nds", "ds"}
    for role, png in written.items():
        assert png == tmp_path / f"learning_curves_{role}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    assert write_learning_curves([FakeRun("nds", 0)], tmp_path / "none") == {}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_study_with_tracking_writes_every_run(tmp_path):
    from typer.testing import CliRunner

    from kdfair.cli import app
    from tests.test_overrides import EXPERIMENT

    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path), "--no-report",
                                   "--set", "tracking=tensorboard"])
    assert res.exit_code == 0, res.output
    root = tmp_path / "tiny-set"
    assert json.loads((root / "experiment.json").read_text())["tracking"] == "tensorboard"
    runs = sorted(p.name for p in (root / "runs").iterdir())
    assert sorted(p.name for p in (root / "tensorboard").iterdir()) == runs
    for run_id in runs:
        history = json.loads((root / "runs" / run_id / "metrics.json").read_text())["history"]
        got = read_scalars(root / "tensorboard" / run_id)
        assert [s for s, _ in got["train/loss"]] == [h["epoch"] for h in history]
        assert [v for _, v in got["train/loss"]] == pytest.approx([h["loss"] for h in history])
        assert [v for _, v in got["train/accuracy"]] == pytest.approx(
            [h["train_acc"] for h in history])
    # a study resumed with tracking on fills in the runs trained before
    import shutil

    shutil.rmtree(root / "tensorboard" / runs[0])
    assert tracking.sync(root) == [root / "tensorboard" / runs[0]]


def test_validation_fairness_is_fairlearn_s_dpd_and_eod_per_member():
    import fairlearn.metrics as flm
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    sex = rng.integers(0, 2, 200)
    preds = np.stack([np.where(rng.random(200) < 0.8, y, 1 - y) for _ in range(3)], 1)
    hook = tracking.validation_fairness(y, {"sex": sex}, 2)
    rows = hook(preds)
    assert len(rows) == 3 and set(rows[0]) == {"val_dpd:sex", "val_eod:sex"}
    for m, row in enumerate(rows):
        assert row["val_dpd:sex"] == pytest.approx(100 * flm.demographic_parity_difference(
            y, preds[:, m], sensitive_features=sex))
        assert row["val_eod:sex"] == pytest.approx(100 * flm.equalized_odds_difference(
            y, preds[:, m], sensitive_features=sex))
    assert tracking.validation_fairness(y, {}, 2) is None  # no attribute: no hook


def _mlp(num_classes, input_shape):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))


def test_study_tracking_writes_validation_fairness_per_epoch(tmp_path):
    import fairlearn.metrics as flm
    import numpy as np
    import torch

    import kdfair
    from kdfair.store.arrays import load_predictions

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    sex = rng.integers(0, 2, 120)
    test = (x, y, {"sex": sex})  # val = test: the last epoch's validation = the stored test run
    torch.set_num_threads(1)
    kdfair.study("tracked", (x, y, {"sex": sex}), test, test, teacher=_mlp, student=_mlp,
                 temperatures=[2], seeds=[0], teacher_train={"epochs": 2, "batch_size": 40},
                 student_train={"epochs": 2, "batch_size": 40}, device="cpu", out=tmp_path,
                 progress=False, write_report=False, tracking="tensorboard")
    root = tmp_path / "tracked"
    assert json.loads((root / "experiment.json").read_text())["tracking"] == "tensorboard"
    for run in (root / "runs").iterdir():
        history = json.loads((run / "metrics.json").read_text())["history"]
        assert [sorted(k for k in h if k.startswith("val_d") or k.startswith("val_e"))
                for h in history] == [["val_dpd:sex", "val_eod:sex"]] * 2
        pred = load_predictions(run)["logits"].argmax(1)  # test order = val order here
        index = load_predictions(run)["index"]
        dpd = flm.demographic_parity_difference(y[index], pred, sensitive_features=sex[index])
        assert history[-1]["val_dpd:sex"] == pytest.approx(100 * dpd)
        got = read_scalars(root / "tensorboard" / run.name)
        assert [s for s, _ in got["val/DPD/sex"]] == [1, 2]
        assert [v for _, v in got["val/EOD/sex"]] == pytest.approx(
            [h["val_eod:sex"] for h in history])
