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
