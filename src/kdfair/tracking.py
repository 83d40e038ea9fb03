"""Training curves in TensorBoard: with ``tracking: tensorboard`` in the experiment, every run's
per-epoch train loss, train accuracy, validation accuracy (when the engine records it) and
learning rate go to TensorBoard event files under ``<results>/tensorboard/<run_id>/``.

The curves come from the run's ``metrics.json["history"]`` (one row per epoch), written when the
run is saved; ``tensorboard --logdir <results>/tensorboard`` shows one run per kdfair run id.
Needs the ``tensorboard`` package (``pip install "kdfair[tracking]"``).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdfair.errors import ConfigError

log = logging.getLogger("kdfair")

# history key -> TensorBoard tag
TAGS = {"loss": "train/loss", "train_acc": "train/accuracy", "val_acc": "val/accuracy",
        "lr": "train/lr"}


def enabled(experiment: Any) -> bool:
    """Whether an Experiment (or its JSON dict) asks for TensorBoard."""
    value = experiment.get("tracking") if isinstance(experiment, Mapping) \
        else getattr(experiment, "tracking", None)
    return value == "tensorboard"


def check_available() -> None:
    """Raise a ConfigError saying how to install TensorBoard when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("tracking: tensorboard needs the tensorboard package; install it with "
                          "pip install \"kdfair[tracking]\" (or set tracking: none)") from None


def write_run(results: str | Path, run_id: str, history: Sequence[Mapping[str, Any]]) -> Path:
    """Write one run's history as event files under ``<results>/tensorboard/<run_id>/``
    (replacing any there); rows without a value for a tag are skipped for that tag."""
    from torch.utils.tensorboard import SummaryWriter

    where = Path(results) / "tensorboard" / run_id
    if where.exists():
        shutil.rmtree(where)
    with SummaryWriter(log_dir=str(where)) as writer:
        for i, row in enumerate(history):
            step = int(row.get("epoch", i + 1))
            for key, tag in TAGS.items():
                value = row.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    writer.add_scalar(tag, float(value), step)
    return where


def record_run(experiment: Any, results: str | Path, run_id: str,
               metrics: Mapping[str, Any]) -> Path | None:
    """The hook where a run is saved: write its curves when the experiment asks for it. A
    failure is logged, never raised (the run itself is already safe in the store)."""
    if not enabled(experiment):
        return None
    try:
        return write_run(results, run_id, metrics.get("history") or [])
    except (ImportError, OSError) as err:
        log.warning("tensorboard curves of %s not written: %s", run_id, err)
        return None


def sync(results: str | Path) -> list[Path]:
    """Write the event files of every finished run that lacks them (e.g. runs trained before
    ``tracking: tensorboard`` was set); returns the folders written."""
    root = Path(results)
    written = []
    for d in sorted((root / "runs").glob("*/metrics.json")):
        run_id = d.parent.name
        if (root / "tensorboard" / run_id).exists():
            continue
        try:
            history = json.loads(d.read_text()).get("history") or []
        except (OSError, ValueError):
            continue
        written.append(write_run(root, run_id, history))
    return written
