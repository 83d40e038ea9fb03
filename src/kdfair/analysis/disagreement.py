"""Disagreement between two models' predictions: per true class, and which predictions flip.

Pairs of runs: a DS run with the teacher it distilled from (``teacher_run_id``; else the teacher
of the same seed; else the only teacher), and with the NDS of the same seed (else every NDS run).
Values are means over the pairs of a temperature.
"""

from __future__ import annotations

import numpy as np


def disagreement_by_class(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray,
                          num_classes: int) -> np.ndarray:
    """Share of test inputs of each true class on which the two predictions differ (NaN: none)."""
    labels = np.asarray(labels)
    differ = np.bincount(labels, weights=(np.asarray(pred_a) != np.asarray(pred_b)),
                         minlength=num_classes)
    total = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, differ / np.maximum(total, 1), np.nan)[:num_classes]


def offdiag_matrix(pred_a: np.ndarray, pred_b: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts M[a, b] of inputs that model A predicts as a and model B as b, diagonal zeroed."""
    m = np.bincount(np.asarray(pred_a, np.int64) * num_classes + np.asarray(pred_b),
                    minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    np.fill_diagonal(m, 0)
    return m


def partner(ds_seed: int, teacher_run_id: str | None, candidates: dict[str, int]) -> list[str]:
    """The reference runs a DS run is compared with, from ``candidates`` (run_id -> seed).

    The run named by ``teacher_run_id`` if present; else those of the same seed; else all.
    """
    if teacher_run_id and teacher_run_id in candidates:
        return [teacher_run_id]
    same = [r for r, s in candidates.items() if s == ds_seed]
    return same or list(candidates)
