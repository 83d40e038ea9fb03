"""Class-wise bias (paper §4): per-class Welch t-tests between groups of runs, #SC and #TC.

For every run, overall accuracy β and class accuracies β_c. Two groups of runs (NDS seeds vs
DS(T) seeds → #SC; teacher seeds vs DS(T) seeds → #TC) are compared class by class with Welch's
t-test on β_c/β (the paper's hypothesis) and on raw β_c. Beyond the paper: direction of each
significant change, the count after Benjamini–Hochberg, Hedges' g. A class with zero variance in
both groups (or no test inputs) has no defined t and counts as untestable, not significant. A
teacher group of a single run (a given, e.g. pretrained, teacher) is a fixed model: DS seeds are
compared with it by a one-sample t-test.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

QUANTITIES = ("relative", "raw")
COMPARISONS = {"nds_vs_ds": ("nds", "#SC"), "teacher_vs_ds": ("teacher", "#TC")}


def class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """β_c for c = 0..C-1 (fraction correct among inputs of true class c; NaN if none)."""
    labels = np.asarray(labels)
    correct = np.bincount(labels, weights=(np.asarray(pred) == labels), minlength=num_classes)
    total = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)[:num_classes]


def relative_accuracy(class_acc: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """β_c / β per run (rows) and class (columns)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(class_acc, float) / np.asarray(accuracy, float)[:, None]


def _small_sample_j(df: float) -> float:
    """Hedges' exact bias correction J(df) = Γ(df/2) / (√(df/2) Γ((df−1)/2)); NaN below df 2."""
    if df < 2:
        return math.nan
    log_ratio = special.gammaln(df / 2) - special.gammaln((df - 1) / 2)
    return float(np.exp(log_ratio) / math.sqrt(df / 2))


def hedges_g(ref: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """Hedges' g per column: (mean_ds − mean_ref) / pooled sd × J(n1 + n2 − 2); NaN if sd = 0."""
    n1, n2 = len(ref), len(ds)
    v1, v2 = np.var(ref, axis=0, ddof=1), np.var(ds, axis=0, ddof=1)
    sd = np.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (ds.mean(0) - ref.mean(0)) / np.where(sd > 0, sd, np.nan)
    return d * _small_sample_j(n1 + n2 - 2)


def hedges_g_one_sample(ds: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """One-sample Hedges' g per column: (mean_ds − μ) / sd_ds × J(n − 1); NaN if sd = 0."""
    sd = np.std(ds, axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (ds.mean(0) - mu) / np.where(sd > 0, sd, np.nan)
    return d * _small_sample_j(len(ds) - 1)


def compare_classes(ref: np.ndarray, ds: np.ndarray, alpha: float = 0.05,
                    one_sample: bool = False) -> pd.DataFrame:
    """Per-class test of DS runs (rows of ``ds``) against reference runs (rows of ``ref``).

    Welch's t-test (``scipy.stats.ttest_ind(ds, ref, equal_var=False)``), or with
    ``one_sample`` a one-sample t-test of ``ds`` against the single row of ``ref``. ``t > 0`` and
    ``diff > 0`` mean DS is higher. Untestable columns (zero variance in both groups, or in the
    DS group for the one-sample test, or any NaN) get NaN t and p and are never significant.
    BH-adjusted p-values are computed over the testable classes only.
    """
    ref, ds = np.atleast_2d(np.asarray(ref, float)), np.atleast_2d(np.asarray(ds, float))
    c = ds.shape[1]
    finite = np.isfinite(ref).all(0) & np.isfinite(ds).all(0)
    # zero variance = all values equal (np.var of equal floats can be 1e-33, not 0)
    varies_ds = np.ptp(ds, axis=0) > 0
    mean_ref, mean_ds = ref.mean(0), ds.mean(0)
    t = np.full(c, np.nan)
    p = np.full(c, np.nan)
    if one_sample and len(ref) != 1:
        raise ValueError("a one-sample test compares with exactly one reference run")
    if one_sample:
        testable = finite & varies_ds
    else:
        testable = finite & ((np.ptp(ref, axis=0) > 0) | varies_ds)
    with warnings.catch_warnings():  # scipy warns on nearly equal samples; p stays valid
        warnings.simplefilter("ignore", RuntimeWarning)
        if testable.any():
            a, b = ds[:, testable], ref[:, testable]
            res = (stats.ttest_1samp(a, b[0], axis=0) if one_sample
                   else stats.ttest_ind(a, b, axis=0, equal_var=False))
            t[testable], p[testable] = res.statistic, res.pvalue
        g = hedges_g_one_sample(ds, ref[0]) if one_sample else hedges_g(ref, ds)
    p_bh = np.full(c, np.nan)
    if testable.any():
        p_bh[testable] = stats.false_discovery_control(p[testable], method="bh")
    diff = mean_ds - mean_ref
    sig = testable & (p < alpha)
    sig_bh = testable & (p_bh < alpha)
    direction = np.where(sig, np.where(diff > 0, "better", "worse"), "")
    return pd.DataFrame({
        "class": np.arange(c), "mean_ref": mean_ref, "mean_ds": mean_ds, "diff": diff,
        "t": t, "p": p, "p_bh": p_bh, "testable": testable, "significant": sig,
        "significant_bh": sig_bh, "direction": direction, "hedges_g": np.where(testable, g, np.nan),
    })


def count(detail: pd.DataFrame) -> dict[str, int]:
    """Counts of one comparison: testable, significant (better / worse), significant after BH."""
    sig = detail["significant"]
    return {
        "n_classes": len(detail), "n_testable": int(detail["testable"].sum()),
        "n_untestable": int((~detail["testable"]).sum()), "n_significant": int(sig.sum()),
        "n_better": int((sig & (detail["diff"] > 0)).sum()),
        "n_worse": int((sig & (detail["diff"] < 0)).sum()),
        "n_significant_bh": int(detail["significant_bh"].sum()),
    }


@dataclass(frozen=True)
class TestPlan:
    """Which test (if any) compares a reference group with a DS group, and why."""

    test: str  # "welch", "one-sample" or "none"
    reason: str = ""


def plan_test(ref_role: str, n_ref: int, n_ds: int, tests_enabled: bool = True) -> TestPlan:
    """Welch needs >= 2 runs per group; a single teacher run is a fixed model (one-sample test)."""
    name = {"nds": "NDS", "teacher": "teacher"}[ref_role]
    if not tests_enabled:
        return TestPlan("none", "tests are switched off (analysis.tests: false)")
    if n_ref == 0:
        return TestPlan("none", f"no {name} runs")
    if n_ds < 2:
        return TestPlan("none", f"DS has {n_ds} run(s) at this T; a t-test needs at least 2")
    if n_ref >= 2:
        return TestPlan("welch")
    if ref_role == "teacher":
        return TestPlan("one-sample")
    return TestPlan("none", f"{name} has 1 run; Welch's t-test needs at least 2 runs per group")


def classwise_tables(runs: pd.DataFrame, class_acc: np.ndarray, alpha: float = 0.05,
                     tests_enabled: bool = True,
                     class_names: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All class-wise tests of a study.

    ``runs`` has one row per run (columns role, T, accuracy as a fraction), aligned with the rows
    of ``class_acc`` [runs, C]. Returns (counts: one row per comparison × T × quantity, with the
    test used and, when none, the reason; detail: one row per comparison × T × quantity × class).
    """
    role = runs["role"].to_numpy()
    temps = runs["T"].to_numpy(dtype=float)
    values = {"raw": np.asarray(class_acc, float),
              "relative": relative_accuracy(class_acc, runs["accuracy"].to_numpy(float))}
    n_classes = values["raw"].shape[1]
    names = class_names or [str(i) for i in range(n_classes)]
    counts, details = [], []
    for temp in sorted(set(temps[role == "ds"])):
        ds_rows = (role == "ds") & (temps == temp)
        for comparison, (ref_role, label) in COMPARISONS.items():
            ref_rows = role == ref_role
            plan = plan_test(ref_role, int(ref_rows.sum()), int(ds_rows.sum()), tests_enabled)
            for q in QUANTITIES:
                row = {"comparison": comparison, "count": label, "T": temp, "quantity": q,
                       "test": plan.test, "alpha": alpha, "n_ref": int(ref_rows.sum()),
                       "n_ds": int(ds_rows.sum()), "reason": plan.reason}
                if plan.test != "none":
                    d = compare_classes(values[q][ref_rows], values[q][ds_rows], alpha,
                                        one_sample=plan.test == "one-sample")
                    row.update(count(d))
                    d.insert(0, "class_name", [names[i] for i in d["class"]])
                    for k in ("quantity", "T", "comparison"):
                        d.insert(0, k, row[k])
                    d["test"] = plan.test
                    details.append(d)
                counts.append(row)
    counts_df = pd.DataFrame(counts, columns=[
        "comparison", "count", "T", "quantity", "test", "alpha", "n_ref", "n_ds", "n_classes",
        "n_testable", "n_untestable", "n_significant", "n_better", "n_worse", "n_significant_bh",
        "reason"])
    detail_df = pd.concat(details, ignore_index=True) if details else pd.DataFrame(
        columns=["comparison", "T", "quantity", "class", "class_name", "mean_ref", "mean_ds",
                 "diff", "t", "p", "p_bh", "testable", "significant", "significant_bh",
                 "direction", "hedges_g", "test"])
    return counts_df, detail_df
