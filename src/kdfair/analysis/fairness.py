"""Group fairness: demographic parity and equalized odds differences, as Fairlearn defines them.

Binary tasks call Fairlearn's ``demographic_parity_difference`` and
``equalized_odds_difference`` (between groups, worst case) directly. Multi-class tasks use
one-vs-rest per class, averaged over classes (the paper's Algorithm 1); calling Fairlearn C times
per run would cost minutes at 1 000 classes, so :func:`ovr_rates` computes the same group rates
from counts (also used for per-group accuracy and bootstrap replicates), with Fairlearn's
conventions: a rate whose denominator is empty is 0 (as sklearn's normalised confusion matrix
gives) and only groups present in the data count. The tests check it against Fairlearn class by
class. Inputs with group code −1 belong to no group and are left out.
"""

from __future__ import annotations

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

    def dpd(self) -> np.ndarray:
        """Demographic parity difference per class (max − min selection rate over groups)."""
        return self.selection.max(0) - self.selection.min(0)

    def eod(self) -> np.ndarray:
        """Equalized odds difference per class: the larger of the TPR and FPR differences."""
        return np.maximum(self.tpr.max(0) - self.tpr.min(0), self.fpr.max(0) - self.fpr.min(0))


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


def ovr_fairness(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, num_classes: int,
                 weights: np.ndarray | None = None) -> tuple[float, float, int]:
    """(DPD, EOD, undefined cells) as fractions: one-vs-rest per class, mean over classes.

    For two classes this equals Fairlearn's binary DPD / EOD (both classes give the same value).
    """
    r = ovr_rates(y, pred, groups, num_classes, weights)
    if len(r.groups) < 2:
        return 0.0, 0.0, 0
    return float(r.dpd().mean()), float(r.eod().mean()), r.undefined


def binary_fairness(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """(DPD, EOD) of a binary task (positive class 1) via Fairlearn; group code −1 left out."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    keep = np.asarray(groups) >= 0
    y, pred, g = np.asarray(y)[keep], np.asarray(pred)[keep], np.asarray(groups)[keep]
    dpd = demographic_parity_difference(y, pred, sensitive_features=g)
    eod = equalized_odds_difference(y, pred, sensitive_features=g)
    return float(dpd), float(eod)


def run_fairness(y: np.ndarray, pred: np.ndarray, groups: np.ndarray,
                 num_classes: int) -> tuple[float, float, int, GroupRates]:
    """(DPD, EOD, undefined cells, group rates) of one run, DPD and EOD as fractions.

    Binary tasks: Fairlearn's functions. Multi-class: one-vs-rest from counts, mean over classes.
    For two classes, a group without positives (or negatives) is counted once, not per class.
    """
    r = ovr_rates(y, pred, groups, num_classes)
    if num_classes == 2:
        dpd, eod = binary_fairness(y, pred, groups)
        return dpd, eod, r.undefined // 2, r
    if len(r.groups) < 2:
        return 0.0, 0.0, 0, r
    return float(r.dpd().mean()), float(r.eod().mean()), r.undefined, r


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
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap distribution of the seed-mean DPD and EOD of a group of runs.

    The test set is resampled (the same resample for every run of the group, so the runs stay
    paired); each replicate's value is the mean over the runs. Returns (dpd [B], eod [B]).
    This is the test-set sampling uncertainty of the mean; the seed spread is the std column.
    """
    dpd = np.empty(replicates)
    eod = np.empty(replicates)
    for b, w in enumerate(bootstrap_weights(len(y), replicates, seed)):
        vals = [ovr_fairness(y, p, groups, num_classes, w)[:2] for p in preds]
        dpd[b], eod[b] = np.mean(vals, axis=0)
    return dpd, eod
