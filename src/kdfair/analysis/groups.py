"""Per-group tables as DataFrames: what Fairlearn's ``MetricFrame`` gives per group, for every
model × attribute (or intersection of attributes) × group × class, with the seed mean and its
95 % interval.

- ``group_rates``: one-vs-rest selection rate, TPR, FPR and accuracy of class c in each group
  (percent), and the counts behind them (group size, inputs of class c, predicted c, correct);
- ``group_measures``: per class, every group measure of the registry (``measures.of("group")``:
  DPD, EOD, DP ratio, EO ratio, EOpp) — ratios beside differences — on the measure's own scale.

Rates come from ``fairness.ovr_rates`` (counts, Fairlearn's conventions: a rate with an empty
denominator is 0) and the measures from the registry's per-class functions, so no metric is
computed twice in kdfair. An intersection ``("sex", "age")`` is one attribute whose groups are
the combinations present (``"female × young"``); an input with code −1 in any of them is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdfair.analysis import fairness, measures
from kdfair.analysis.seedstats import seed_ci
from kdfair.errors import ConfigError
from kdfair.store import CorruptRun
from kdfair.store import StudyIndex as Store
from kdfair.store.index import read_predictions

RATES = ("selection_rate", "tpr", "fpr", "accuracy")  # percent, per group and class
SEP = " × "


def intersection(codes: dict[str, np.ndarray], names: dict[str, list[str]],
                 attributes: Sequence[str]) -> tuple[str, np.ndarray, list[str]]:
    """(name, codes, group names) of the intersection of ``attributes``: code i ↔ the i-th
    combination of their groups (first attribute slowest); −1 where any code is −1."""
    attributes = list(attributes)
    unknown = [a for a in attributes if a not in codes]
    if unknown or len(attributes) < 2:
        why = (f"unknown attribute(s) {', '.join(map(repr, unknown))}" if unknown
               else f"{attributes} names fewer than two attributes")
        raise ConfigError(f"groups: {why}; an intersection names two or more of the study's "
                          f"attributes ({', '.join(codes) or 'it has none'}), e.g. "
                          f"groups=[{', '.join(map(repr, list(codes)[:2]))}]")
    combined = np.zeros(len(codes[attributes[0]]), np.int64)
    missing = np.zeros(len(combined), bool)
    for a in attributes:
        combined = combined * len(names[a]) + np.maximum(codes[a], 0)
        missing |= codes[a] < 0
    labels = [SEP.join(p) for p in itertools.product(*(names[a] for a in attributes))]
    return SEP.join(attributes), np.where(missing, -1, combined), labels


def _intersections(groups: Sequence[str] | Sequence[Sequence[str]] | None
                   ) -> list[list[str]]:
    if not groups:
        return []
    if all(isinstance(g, str) for g in groups):
        return [list(groups)]  # type: ignore[arg-type]
    if any(isinstance(g, str) for g in groups):
        raise ConfigError("groups: give one intersection as a list of attribute names "
                          "(['sex', 'age']) or several as a list of such lists")
    return [list(g) for g in groups]


def _per_run(y: np.ndarray, pred: np.ndarray, codes: np.ndarray, c: int
             ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(groups present, {rate: [G, C]} in percent plus counts, {measure key: [C]})."""
    r = fairness.ovr_rates(y, pred, codes, c)
    predicted = r.selection * r.n[:, None]
    positives = np.stack([np.bincount(y[codes == g], minlength=c) for g in r.groups]) \
        if len(r.groups) else np.zeros((0, c))
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (r.n[:, None] - predicted - positives + 2 * r.tp) / r.n[:, None]
    rates = {"selection_rate": 100 * r.selection, "tpr": 100 * r.tpr, "fpr": 100 * r.fpr,
             "accuracy": 100 * accuracy, "predicted": predicted, "correct": r.tp,
             "positives": positives.astype(float), "n": np.repeat(r.n[:, None], c, axis=1)}
    values = {m.key: m.scale * m.per_class(r) for m in measures.of("group")}
    return r.groups, rates, values


def _stats(stack: np.ndarray, resamples: int, seed: int, ci: str, label: str,
           bounds: tuple[float, float] = (0.0, 100.0)) -> dict[str, np.ndarray]:
    """mean, std, ci_low, ci_high over runs (axis 0) of ``stack`` [n_runs, …] (flattened);
    the interval clipped to the values the quantity can take (as ``common.by_group`` does)."""
    flat = stack.reshape(len(stack), -1)
    low, high = seed_ci(flat, resamples, seed, label=label, method=ci)
    low, high = np.maximum(low, bounds[0]), np.minimum(high, bounds[1])  # (NaN stays NaN)
    std = flat.std(0, ddof=1) if len(flat) > 1 else np.full(flat.shape[1], np.nan)
    return {"mean": flat.mean(0), "std": std, "ci_low": low, "ci_high": high}


def group_tables(store: Store, groups: Sequence[str] | Sequence[Sequence[str]] | None = None,
                 resamples: int = 2000, seed: int = 0, ci: str = "t"
                 ) -> dict[str, pd.DataFrame]:
    """``{"group_rates": …, "group_measures": …}`` of a store (see the module docstring);
    ``groups``: intersections to add to the single attributes, e.g. ``["sex", "age"]``;
    ``resamples``, ``seed``, ``ci``: the seed interval (``AnalysisConfig.seed_*``)."""
    codes = dict(store.attributes)
    names = {a: list(store.attribute_groups[a]) for a in codes}
    for attrs in _intersections(groups):
        name, combined, labels = intersection(store.attributes, store.attribute_groups, attrs)
        codes[name], names[name] = combined, labels
    c, class_names = store.num_classes, list(store.class_names)
    models: dict[tuple, list[tuple]] = {}  # (method, role, T) -> per run: {attr: per-run arrays}
    for run in store.runs:
        try:
            logits, y = read_predictions(run, store.n_test)
        except CorruptRun:
            continue  # the analysis notes it; the tables use the runs that can be read
        pred = np.asarray(logits).argmax(1)
        t = None if np.isnan(run.temperature) else float(run.temperature)
        models.setdefault((run.method, run.role, t), []).append(
            {a: _per_run(y, pred, codes[a], c) for a in codes})
    rate_parts, measure_parts = [], []
    for (method, role, t), runs in models.items():
        base = {"method": method, "role": role, "T": np.nan if t is None else t,
                "n_runs": len(runs)}
        for a in codes:
            present = runs[0][a][0]
            g = len(present)
            label = f"{method}:{role}:{t}:{a}"
            rows = {**base, "attribute": a,
                    "group": np.repeat([names[a][i] for i in present], c),
                    "class": np.tile(np.arange(c), g), "class_name": class_names * g,
                    "n": runs[0][a][1]["n"].ravel(),
                    "positives": runs[0][a][1]["positives"].ravel()}
            for key in (*RATES, "predicted", "correct"):
                s = _stats(np.stack([r[a][1][key] for r in runs]), resamples, seed, ci,
                           f"{label}:{key}")
                stats = ("mean",) if key in ("predicted", "correct") else s
                for stat in stats:
                    rows[f"{key}_{stat}"] = s[stat]
            rate_parts.append(pd.DataFrame(rows))
            mrows = {**base, "attribute": a, "class": np.arange(c), "class_name": class_names}
            for m in measures.of("group"):
                s = _stats(np.stack([r[a][2][m.key] for r in runs]), resamples, seed, ci,
                           f"{label}:{m.key}", m.bounds)
                for stat, v in s.items():
                    mrows[f"{m.key}_{stat}"] = v
            measure_parts.append(pd.DataFrame(mrows))
    return {"group_rates": _ordered(rate_parts), "group_measures": _ordered(measure_parts)}


def _ordered(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts, ignore_index=True)
    order = df["role"].map({"teacher": 0, "nds": 1, "ds": 2}) * 1e6 + df["T"].fillna(-1)
    return df.assign(_k=order).sort_values("_k", kind="stable").drop(columns="_k").reset_index(
        drop=True)
