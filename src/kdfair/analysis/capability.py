"""What a study can show, computed before any finding is read: regime, resolution, noise floor.

A measurement that cannot see is worse than none. Three numbers say what a study can resolve:

- **regime**: the teacher–NDS accuracy gap (beside the paper's for the same data). When the NDS is
  within :data:`CEILING_POINTS` of the teacher or of 100 %, the study is *at the ceiling*: there is
  no room for distillation to lift the student, and the paper's effects cannot appear.
- **resolution**: the smallest true difference between two models' seed means that a two-sided
  Welch test at the study's level finds with 80 % power, given the seed spread measured here
  (:func:`detectable_difference`); a test image is the finest step accuracy can take.
- **fairness noise floor**: DPD / EOD rest on (group, class) cells; the smallest cell bounds how
  finely a TPR can move, and the gap that chance alone gives on this test set is measured by
  shuffling the group labels within each class over the NDS's own predictions
  (:func:`chance_gaps`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import optimize, stats

from kdfair.analysis import measures
from kdfair.analysis.fairness import GroupRates, ovr_rates

CEILING_POINTS = 1.0  # NDS this close (accuracy points) to the teacher or to 100 %: a ceiling
POWER = 0.8
CHANCE_PERMUTATIONS = 200
CHANCE_QUANTILE = 95.0
COLUMNS = ["aspect", "quantity", "measure", "attribute", "value", "unit", "verdict", "sentence"]
RESOLUTION = "detectable accuracy difference (DS vs NDS)"  # the resolution row's quantity


def detectable_difference(sd_a: float, n_a: int, sd_b: float, n_b: int, level: float = 0.05,
                          power: float = POWER) -> float:
    """The smallest |mean_a − mean_b| a two-sided Welch t-test at ``level`` detects with
    probability ``power`` (noncentral t with Welch–Satterthwaite df). NaN with fewer than 2
    runs in a group; 0 when both groups have no spread."""
    if n_a < 2 or n_b < 2 or not (np.isfinite(sd_a) and np.isfinite(sd_b)):
        return math.nan
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    crit = stats.t.ppf(1 - level / 2, df)

    def shortfall(delta: float) -> float:
        nc = delta / se
        upper = float(stats.nct.sf(crit, df, nc))
        lower = float(stats.nct.cdf(-crit, df, nc))  # NaN far in the tail (scipy): it is ~0
        upper = upper if np.isfinite(upper) else 1.0
        return upper + (lower if np.isfinite(lower) else 0.0) - power

    hi = se
    while shortfall(hi) < 0:
        hi *= 2
    return float(optimize.brentq(shortfall, 0.0, hi, xtol=se * 1e-9))


def pooled_sd(values: pd.Series, groups: pd.Series) -> tuple[float, int]:
    """(pooled within-group sample sd, median group size) of ``values`` grouped by ``groups``
    (e.g. DS accuracy by T); NaN sd when no group has two values."""
    g = pd.Series(np.asarray(values, float)).groupby(np.asarray(groups))
    sizes, var = g.size(), g.var(ddof=1).dropna()
    dof = sizes[var.index] - 1
    sd = math.sqrt(float((var * dof).sum() / dof.sum())) if dof.sum() > 0 else math.nan
    return sd, int(sizes.median()) if len(sizes) else 0


def chance_gaps(labels: np.ndarray, pred: np.ndarray, groups: np.ndarray, num_classes: int,
                values: Callable[[GroupRates], dict[str, float]],
                permutations: int = CHANCE_PERMUTATIONS, seed: int = 0) -> dict[str, np.ndarray]:
    """Each group measure (``values`` of the group rates, fractions) of ``pred`` with the group
    labels shuffled ``permutations`` times among the inputs of the same true class that have a
    group: every (group, class) cell keeps its size, so the group base rates stay as the test
    set has them and only the link between errors and groups is broken — what chance alone
    gives on this test set. Returns key -> [permutations]."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    strata = [np.flatnonzero((labels == c) & (groups >= 0)) for c in range(num_classes)]
    strata = [s for s in strata if len(s) > 1]
    rng = np.random.default_rng([seed, 20_000_001])
    out: dict[str, np.ndarray] = {}
    shuffled = groups.copy()
    for i in range(permutations):
        for idx in strata:
            shuffled[idx] = groups[idx][rng.permutation(len(idx))]
        for key, v in values(ovr_rates(labels, pred, shuffled, num_classes)).items():
            out.setdefault(key, np.empty(permutations))[i] = v
    return out


def smallest_cell(labels: np.ndarray, groups: np.ndarray, num_classes: int) -> int:
    """Test inputs in the smallest (group, class) cell among groups present (0 if one is empty)."""
    groups = np.asarray(groups)
    keep = groups >= 0
    present = np.unique(groups[keep])
    counts = np.zeros((len(present), num_classes), np.int64)
    pos = np.searchsorted(present, groups[keep])
    np.add.at(counts, (pos, np.asarray(labels)[keep]), 1)
    return int(counts.min()) if counts.size else 0


def _row(aspect: str, quantity: str, value: float, unit: str, verdict: str, sentence: str,
         measure: str = "", attribute: str = "") -> dict:
    return {"aspect": aspect, "quantity": quantity, "measure": measure, "attribute": attribute,
            "value": value, "unit": unit, "verdict": verdict, "sentence": sentence}


def regime_rows(accuracy: pd.DataFrame, paper_gap: float | None,
                paper_name: str | None) -> list[dict]:
    """The teacher–NDS gap and the ceiling verdict (accuracy table in percent)."""
    def mean(role: str) -> float:
        r = accuracy[accuracy["role"] == role]
        return float(r["acc_mean"].iloc[0]) if len(r) else math.nan

    teacher, nds = mean("teacher"), mean("nds")
    if not np.isfinite(nds):
        return []
    gap = teacher - nds
    paper = (f" (paper, {paper_name}: {paper_gap:.2f})" if paper_gap is not None
             and np.isfinite(paper_gap) else "")
    near_teacher = bool(np.isfinite(gap) and abs(gap) <= CEILING_POINTS)
    if near_teacher or 100.0 - nds <= CEILING_POINTS:
        where = "of the teacher" if near_teacher else "of 100 %"
        sentence = (f"At the ceiling: the NDS ({nds:.2f} %) is within {CEILING_POINTS:g} point "
                    f"{where} — no room for distillation to lift it; "
                    + ("the paper's effects" if paper_name else "distillation's effects")
                    + " cannot appear, and model differences are a few test images.")
        verdict = "ceiling"
    elif gap < 0:
        sentence = (f"Regime: the teacher ({teacher:.2f} %) is {-gap:.2f} points below the NDS "
                    f"({nds:.2f} %){paper}: nothing to teach, so distillation from a better "
                    "model cannot be shown here.")
        verdict = "weak teacher"
    else:
        sentence = (f"Regime: teacher {teacher:.2f} %, NDS {nds:.2f} % — a gap of {gap:.2f} "
                    f"points{paper}: room for distillation to lift the student.")
        verdict = "room"
    return [_row("regime", "teacher − NDS accuracy", gap, "points", verdict, sentence)]


def resolution_rows(runs: pd.DataFrame, n_test: int, level: float) -> list[dict]:
    """The accuracy difference the seeds resolve: between the NDS and a DS group (pooled DS
    spread over T), Welch at ``level`` with 80 % power; and the step of one test image."""
    step = 100.0 / n_test if n_test else math.nan
    nds = runs.loc[runs["role"] == "nds", "accuracy"].to_numpy(float)
    ds = runs[runs["role"] == "ds"]
    out = []
    if len(nds) >= 2 and len(ds):
        sd_ds, n_ds = pooled_sd(ds["accuracy"], ds["T"])
        mdd = detectable_difference(float(np.std(nds, ddof=1)), len(nds), sd_ds, n_ds, level)
        if np.isfinite(mdd):
            mdd = max(mdd, step)
            out.append(_row(
                "resolution", RESOLUTION, mdd, "points",
                "resolves" if mdd < 1.0 else "coarse",
                f"Resolution: {len(nds)} NDS and {n_ds} DS seeds per T resolve accuracy "
                f"differences of {mdd:.2f} points (Welch, p < {level:g}, 80 % power, seed sd "
                f"{np.std(nds, ddof=1):.2f} / {sd_ds:.2f}); one test image is {step:.3g} "
                "points."))
    elif np.isfinite(step):
        out.append(_row("resolution", "one test image", step, "points", "no seed spread",
                        f"Resolution: one test image is {step:.3g} points; with fewer than 2 "
                        "seeds of the NDS or no DS there is no seed spread to size a test."))
    return out


def noise_rows(labels: np.ndarray, nds_pred: np.ndarray | None, attributes: dict[str,
               np.ndarray], num_classes: int, observed: pd.DataFrame, seed: int = 0
               ) -> list[dict]:
    """Per attribute: the smallest (group, class) cell and the value of each headline group
    measure that chance gives (95th percentile over shuffles of the group labels) beside the
    NDS's observed value; the first row's sentence speaks for every attribute."""
    group = measures.of("group", headline_only=True)
    binary = num_classes == 2
    out, parts, cells = [], [], []
    for attr, codes in attributes.items():
        if nds_pred is None or len(np.unique(codes[codes >= 0])) < 2:
            continue
        cell = smallest_cell(labels, codes, num_classes)
        draws = chance_gaps(labels, nds_pred, codes, num_classes,
                            lambda r: measures.group_values(r, binary, group), seed=seed)
        floor = {m.key: m.scale * float(np.nanpercentile(draws[m.key], CHANCE_QUANTILE))
                 for m in group}
        seen = observed[(observed["attribute"] == attr) & (observed["role"] == "nds")] \
            if not observed.empty else observed
        nds = {m.key: float(seen[f"{m.key}_mean"].iloc[0]) if len(seen) else math.nan
               for m in group}
        inside = [m for m in group if np.isfinite(nds[m.key]) and nds[m.key] <= floor[m.key]]
        parts.append(
            f"'{attr}' " + ", ".join(f"{m.label} {floor[m.key]:.2f} {m.unit}" for m in group)
            + " (NDS " + " / ".join(f"{nds[m.key]:.2f}" for m in group)
            + (f": {' and '.join(m.label for m in inside)} within chance" if inside else "")
            + ")")
        cells.append(cell)
        for m in group:
            out.append(_row("noise floor", f"chance {m.label} '{attr}'", floor[m.key], m.unit,
                            "noise" if m in inside else "above chance", "", m.key, attr))
        out.append(_row("noise floor", f"smallest cell '{attr}'", float(cell), "inputs", "",
                        "", attribute=attr))
    if out:
        out[0]["sentence"] = (
            "Fairness noise floor, what chance alone gives here (group labels shuffled within "
            "classes, 95th percentile): " + "; ".join(parts) + f"; smallest (group, class) "
            f"cell {min(cells)} inputs, one error {100 / max(min(cells), 1):.3g} TPR points. "
            "Gaps below the floor are noise.")
    return out


def capability_table(runs: pd.DataFrame, accuracy: pd.DataFrame, fairness: pd.DataFrame,
                     labels: np.ndarray, nds_pred: np.ndarray | None,
                     attributes: dict[str, np.ndarray], num_classes: int, n_test: int,
                     level: float, paper_gap: float | None = None,
                     paper_name: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Every 'what this study can show' row: regime, resolution, noise floor per attribute."""
    rows = regime_rows(accuracy, paper_gap, paper_name)
    rows += resolution_rows(runs, n_test, level)
    rows += noise_rows(labels, nds_pred, attributes, num_classes, fairness, seed)
    return pd.DataFrame(rows, columns=COLUMNS)


def resolution_of(table: pd.DataFrame) -> float:
    """The detectable accuracy difference in points (NaN when the study has none)."""
    r = table[table["quantity"] == RESOLUTION] \
        if not table.empty else table
    return float(r["value"].iloc[0]) if len(r) else math.nan


def within_chance(table: pd.DataFrame, key: str) -> bool:
    """Whether the NDS's value of a group measure ('eod:colour', see measures.split_key) lies
    within what chance gives on this test set (the noise-floor rows)."""
    measure, attr = measures.split_key(key)
    if table.empty or measure is None or attr is None:
        return False
    r = table[(table["measure"] == measure.key) & (table["attribute"] == attr)]
    return bool(len(r) and r["verdict"].iloc[0] == "noise")


def at_ceiling(table: pd.DataFrame) -> bool:
    return bool(not table.empty and (table["verdict"] == "ceiling").any())


def sentences(table: pd.DataFrame) -> list[str]:
    return [s for s in table["sentence"] if isinstance(s, str) and s] if not table.empty else []
