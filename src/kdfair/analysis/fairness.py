"""Group fairness as Fairlearn defines it: group rates from counts, and each measure per class.

:func:`ovr_rates` computes every group's one-vs-rest selection rate, TPR and FPR for every class
from counts — calling Fairlearn C times per run would cost minutes at 1 000 classes — with
Fairlearn's conventions: a rate whose denominator is empty is 0 (as sklearn's normalised
confusion matrix gives) and only groups present in the data count. Each measure is a function of
those rates giving one value per class; :func:`reduce_classes` makes one number per run: the
positive class's on a binary task (exactly Fairlearn's binary function), the mean over classes
on a multi-class one (the paper's Algorithm 1). The tests check every measure against Fairlearn,
binary and class by class. Inputs with group code −1 belong to no group and are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GroupRates:
    """One-vs-rest rates per group (rows, groups present only) and class (columns)."""

    groups: np.ndarray  # group codes present, [G]
    n: np.ndarray  # inputs per group, [G]
    selection: np.ndarray  # P(pred = c | group), [G, C]
    tpr: np.ndarray  # P(pred = c | y = c, group), 0 where undefined, [G, C]
    fpr: np.ndarray  # P(pred = c | y != c, group), 0 where undefined, [G, C]
    tp: np.ndarray  # correct predictions of class c in each group (weighted counts), [G, C]
    undefined: int  # (group, class) cells with no positives or no negatives


def ovr_rates(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, num_classes: int,
              weights: np.ndarray | None = None) -> GroupRates:
    """Per-group one-vs-rest selection rate, TPR and FPR for every class, from counts.

    ``weights`` (e.g. bootstrap multiplicities) weight each input; Fairlearn's ``sample_weight``.
    """
    y, pred, groups = np.asarray(y), np.asarray(pred), np.asarray(groups)
    keep = groups >= 0
    if weights is None:
        w = keep.astype(np.float64)
    else:
        w = np.where(keep, np.asarray(weights, np.float64), 0.0)
    n_groups = int(groups.max(initial=-1)) + 1
    g = np.where(keep, groups, 0)
    c = num_classes
    size = n_groups * c
    n_g = np.bincount(g, weights=w, minlength=n_groups)
    predicted = np.bincount(g * c + pred, weights=w, minlength=size).reshape(n_groups, c)
    positive = np.bincount(g * c + y, weights=w, minlength=size).reshape(n_groups, c)
    tp = np.bincount(g * c + y, weights=w * (pred == y), minlength=size).reshape(n_groups, c)
    present = n_g > 0
    n_g, predicted, positive, tp = n_g[present], predicted[present], positive[present], tp[present]
    negative = n_g[:, None] - positive
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = predicted / n_g[:, None]
        tpr = np.where(positive > 0, tp / positive, 0.0)
        fpr = np.where(negative > 0, (predicted - tp) / negative, 0.0)
    undefined = int(((positive <= 0) | (negative <= 0)).sum()) if len(n_g) > 1 else 0
    return GroupRates(np.flatnonzero(present), n_g, sel, tpr, fpr, tp, undefined)


def demographic_parity_difference(r: GroupRates) -> np.ndarray:
    """Per class: the largest minus the smallest selection rate over groups (Fairlearn's
    ``demographic_parity_difference``)."""
    return _spread(r.selection)


def equalized_odds_difference(r: GroupRates) -> np.ndarray:
    """Per class: the larger of the TPR and FPR differences between groups (Fairlearn's
    ``equalized_odds_difference``, worst case)."""
    return np.maximum(_spread(r.tpr), _spread(r.fpr))


def demographic_parity_ratio(r: GroupRates) -> np.ndarray:
    """Per class: the smallest over the largest selection rate over groups (Fairlearn's
    ``demographic_parity_ratio``; the '80 % rule' asks for at least 0.8); NaN where no group
    selects the class, as Fairlearn's 0 / 0."""
    return _ratio(r.selection)


def equalized_odds_ratio(r: GroupRates) -> np.ndarray:
    """Per class: the smaller of the TPR and FPR ratios between groups (Fairlearn's
    ``equalized_odds_ratio``, worst case). Where one ratio is undefined (0 / 0) the other is
    taken; Fairlearn does so when the FPR ratio is the undefined one but returns NaN when the
    TPR ratio is, an order effect of Python's ``min`` that kdfair does not copy."""
    return np.fmin(_ratio(r.tpr), _ratio(r.fpr))


def equal_opportunity_difference(r: GroupRates) -> np.ndarray:
    """Per class: the TPR difference between groups alone (Fairlearn's
    ``equal_opportunity_difference``)."""
    return _spread(r.tpr)


def _ratio(rates: np.ndarray) -> np.ndarray:
    """min / max over groups per class; NaN where the max is 0; 1 with no group."""
    if not len(rates):
        return np.ones(rates.shape[1])
    low, high = rates.min(0), rates.max(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(high > 0, low / np.where(high > 0, high, 1.0), np.nan)


def _spread(rates: np.ndarray) -> np.ndarray:
    """max − min over groups per class; 0 with no group (nothing differs)."""
    if not len(rates):
        return np.zeros(rates.shape[1])
    return rates.max(0) - rates.min(0)


def reduce_classes(values: np.ndarray, binary: bool) -> float:
    """One run's value from its per-class values: the positive class's (class 1, Fairlearn's
    ``pos_label``) on a binary task; otherwise the mean over the classes where it is defined
    (the paper's Algorithm 1); NaN where no class has one."""
    values = np.asarray(values, np.float64)
    if binary:
        return float(values[1])
    v = values[np.isfinite(values)]
    return float(v.mean()) if len(v) else float("nan")


def undefined_cells(r: GroupRates, binary: bool) -> int:
    """(group, class) cells with no positives or no negatives; a binary task's two classes
    share their cells, so each is counted once."""
    return r.undefined // 2 if binary else r.undefined


def group_table(rates: GroupRates, group_names: list[str], binary: bool) -> pd.DataFrame:
    """Per-group n, accuracy and (binary tasks) selection rate P(pred = 1), as fractions.

    The same numbers as Fairlearn's ``MetricFrame`` with ``count``, ``accuracy_score`` and
    ``selection_rate`` (the tests check it); from counts, because MetricFrame takes ~0.5 s per
    run at 50 000 test inputs.
    """
    out = pd.DataFrame({"group": [group_names[g] for g in rates.groups], "n": rates.n,
                        "accuracy": rates.tp.sum(1) / rates.n})
    if binary:
        out["selection_rate"] = rates.selection[:, 1]
    return out


def bootstrap_weights(n: int, replicates: int, seed: int = 0):
    """Yield ``replicates`` multinomial resampling weight vectors over n test inputs."""
    rng = np.random.default_rng(seed)
    for _ in range(replicates):
        yield rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float64)


def bootstrap_group_means(y: np.ndarray, preds: list[np.ndarray], groups: np.ndarray,
                          num_classes: int, replicates: int,
                          values: Callable[[GroupRates], dict[str, float]],
                          seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap distribution of the seed mean of each group measure of a group of runs.

    ``values`` maps a run's group rates to its measures (fractions). The test set is resampled
    (the same resample for every run of the group, so the runs stay paired); each replicate's
    value is the mean over the runs. Returns key -> [B]. This is the test-set sampling
    uncertainty of the mean; the seed spread is the std column.
    """
    out: dict[str, np.ndarray] = {}
    for b, w in enumerate(bootstrap_weights(len(y), replicates, seed)):
        per_run = [values(ovr_rates(y, p, groups, num_classes, w)) for p in preds]
        for key in per_run[0]:
            out.setdefault(key, np.empty(replicates))[b] = np.mean([v[key] for v in per_run])
    return out
