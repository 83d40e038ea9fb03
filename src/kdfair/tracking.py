"""Training curves in TensorBoard: with ``tracking: tensorboard`` in the experiment, every run's
per-epoch train loss, train accuracy, validation accuracy (when the engine records it), learning
rate and validation fairness — DPD and EOD per sensitive attribute of the validation set
(``val/DPD/<attribute>``, percent; :func:`validation_fairness`) — go to TensorBoard event files
under ``<results>/tensorboard/<run_id>/``.

The curves come from the run's ``metrics.json["history"]`` (one row per epoch), written when the
run is saved; ``tensorboard --logdir <results>/tensorboard`` shows one run per kdfair run id.
Needs the ``tensorboard`` package (``pip install "kdfair[tracking]"``).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdfair.errors import ConfigError, KdfairError
from kdfair.reading import MAX_JSON_BYTES, read_text

log = logging.getLogger("kdfair")

# history key -> TensorBoard tag
TAGS = {"loss": "train/loss", "train_acc": "train/accuracy", "val_acc": "val/accuracy",
        "lr": "train/lr"}


VAL_FAIRNESS = "val_"  # history keys "val_<measure key>:<attribute>" -> "val/<label>/<attr>"


def validation_fairness(y: np.ndarray, attributes: Mapping[str, np.ndarray], num_classes: int
                        ) -> Callable[[np.ndarray], list[dict[str, float]]] | None:
    """The engine's per-epoch hook: each member's predicted classes on the validation set
    ``[N, G]`` -> per member ``{"val_dpd:<attribute>": …, "val_eod:<attribute>": …}`` (the
    registry's headline group measures, as the report computes them: ``analysis.fairness``);
    None where the validation set has no sensitive attribute (nothing to compute)."""
    y = np.asarray(y)
    attrs = {a: np.asarray(c) for a, c in attributes.items() if len(c) == len(y)}
    if not attrs or not len(y):
        return None
    from kdfair.analysis import measures  # pure functions of counts (numpy)
    from kdfair.analysis.fairness import ovr_rates, reduce_classes

    headline = measures.of("group", headline_only=True)

    def per_member(preds: np.ndarray) -> list[dict[str, float]]:
        preds = np.asarray(preds).reshape(len(y), -1)
        out = []
        for m in range(preds.shape[1]):
            row = {}
            for a, codes in attrs.items():
                rates = ovr_rates(y, preds[:, m], codes, num_classes)
                for ms in headline:
                    row[f"{VAL_FAIRNESS}{ms.key}:{a}"] = ms.scale * reduce_classes(
                        ms.per_class(rates), num_classes == 2)
            out.append(row)
        return out

    return per_member


def _fairness_tag(key: str) -> str | None:
    """``val_dpd:sex`` -> ``val/DPD/sex``; None for any other history key."""
    if not key.startswith(VAL_FAIRNESS) or ":" not in key:
        return None
    from kdfair.analysis import measures

    name, attr = key[len(VAL_FAIRNESS):].split(":", 1)
    try:
        return f"val/{measures.get(name).label}/{attr}"
    except KeyError:
        return None


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
    from kdfair.store.files import inside  # nothing removed or written through a link

    where = inside(Path(results), "tensorboard", run_id)
    from torch.utils.tensorboard import SummaryWriter

    if where.exists():
        shutil.rmtree(where)
    with SummaryWriter(log_dir=str(where)) as writer:
        for i, row in enumerate(history):
            step = int(row.get("epoch", i + 1))
            tags = {**TAGS, **{k: t for k in row if (t := _fairness_tag(k)) is not None}}
            for key, tag in tags.items():
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
    except (ImportError, OSError, KdfairError) as err:
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
            history = json.loads(read_text(d, MAX_JSON_BYTES)).get("history") or []
        except (OSError, ValueError, AttributeError):
            continue
        written.append(write_run(root, run_id, history))
    return written
