"""Class-wise bias (paper §4): per-class tests between groups of runs, #SC and #TC.

For every run, overall accuracy β and class accuracies β_c. Two groups of runs (NDS seeds vs
DS(T) seeds → #SC; teacher seeds vs DS(T) seeds → #TC) are compared class by class on β_c/β (the
paper's hypothesis; a change in the class's *share* of accuracy) and on raw β_c (the class's own
accuracy; only this test says a class improved or worsened). Tests: Welch's t-test (the paper),
or an exact permutation test of the difference in means; unpaired (the paper) or paired on
seed-matched differences. Beyond the paper: direction of each significant change, the count
after Benjamini–Hochberg, Hedges' g. A class whose groups are each constant has no defined t:
if the constants differ it is "different in every seed (untestable by Welch)" and counted as
such; the permutation test handles it. A teacher group of a single run (a given, e.g. pretrained,
teacher) is a fixed model: DS seeds are compared with it by a one-sample test.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from kdfair.store import ROLE_LABELS

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


def _permutation_p(samples: tuple[np.ndarray, ...], kind: str, resamples: int,
                   seed: int) -> np.ndarray:
    """Two-sided permutation p-values of the mean difference, column by column (scipy).

    Exact (every permutation) when there are at most ``resamples`` of them, else Monte Carlo.
    ``kind``: "independent" (two groups), "samples" (paired: swap within pairs; one sample of
    differences: flip signs).
    """
    if len(samples) == 1:
        def stat(x, axis):
            return np.mean(x, axis=axis)
    elif kind == "samples":
        def stat(x, y, axis):
            return np.mean(x - y, axis=axis)
    else:
        def stat(x, y, axis):
            return np.mean(x, axis=axis) - np.mean(y, axis=axis)
    res = stats.permutation_test(samples, stat, permutation_type=kind, vectorized=True,
                                 n_resamples=resamples, axis=0, random_state=seed)
    return np.atleast_1d(res.pvalue)


def compare_classes(ref: np.ndarray, ds: np.ndarray, significance: float = 0.05,
                    one_sample: bool = False, paired: bool = False, method: str = "welch",
                    resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per-class test of DS runs (rows of ``ds``) against reference runs (rows of ``ref``).

    ``method`` "welch": Welch's t-test (``scipy.stats.ttest_ind(ds, ref, equal_var=False)``),
    with ``paired`` the paired t-test on seed-matched rows (``ttest_rel``), with ``one_sample``
    a one-sample t-test against the single row of ``ref``. ``method`` "permutation": the exact
    permutation test of the same mean difference (``scipy.stats.permutation_test``). ``t > 0``
    and ``diff > 0`` mean DS is higher. Untestable columns get NaN t and p and are never
    significant; ``constant_different`` marks those whose values are constant within each group
    (or whose paired differences are one constant) yet differ. BH-adjusted p-values are computed
    over the testable classes only.
    """
    ref, ds = np.atleast_2d(np.asarray(ref, float)), np.atleast_2d(np.asarray(ds, float))
    if one_sample and len(ref) != 1:
        raise ValueError("a one-sample test compares with exactly one reference run")
    if paired and ref.shape != ds.shape:
        raise ValueError("a paired test needs seed-matched rows: ref and ds of the same shape")
    c = ds.shape[1]
    finite = np.isfinite(ref).all(0) & np.isfinite(ds).all(0)
    mean_ref, mean_ds = ref.mean(0), ds.mean(0)
    diff = mean_ds - mean_ref
    # zero variance = all values equal (np.var of equal floats can be 1e-33, not 0)
    if one_sample or paired:
        d = ds - ref if paired else ds - ref[0]
        varies = np.ptp(d, axis=0) > 0
        constant_different = finite & ~varies & (d[0] != 0)
    else:
        varies = (np.ptp(ref, axis=0) > 0) | (np.ptp(ds, axis=0) > 0)
        constant_different = finite & ~varies & (mean_ref != mean_ds)
    testable = finite & varies
    if method == "permutation":
        testable = testable | constant_different
    t = np.full(c, np.nan)
    p = np.full(c, np.nan)
    with warnings.catch_warnings():  # scipy warns on nearly equal samples; p stays valid
        warnings.simplefilter("ignore", RuntimeWarning)
        if testable.any():
            a, b = ds[:, testable], ref[:, testable]
            if one_sample:
                res = stats.ttest_1samp(a, b[0], axis=0)
            elif paired:
                res = stats.ttest_rel(a, b, axis=0)
            else:
                res = stats.ttest_ind(a, b, axis=0, equal_var=False)
            t[testable] = res.statistic
            if method == "permutation":
                samples = (a - b[0],) if one_sample else (a, b)
                kind = "samples" if (one_sample or paired) else "independent"
                p[testable] = _permutation_p(samples, kind, resamples, seed)
            else:
                p[testable] = res.pvalue
        g = hedges_g_one_sample(ds, ref[0]) if one_sample else hedges_g(ref, ds)
    p_bh = np.full(c, np.nan)
    if testable.any():
        p_bh[testable] = stats.false_discovery_control(p[testable], method="bh")
    sig = testable & (p < significance)
    sig_bh = testable & (p_bh < significance)
    direction = np.where(sig, np.where(diff > 0, "higher", "lower"), "")
    return pd.DataFrame({
        "class": np.arange(c), "mean_ref": mean_ref, "mean_ds": mean_ds, "diff": diff,
        "t": t, "p": p, "p_bh": p_bh, "testable": testable,
        "constant_different": constant_different, "significant": sig,
        "significant_bh": sig_bh, "direction": direction,
        "hedges_g": np.where(testable & np.isfinite(g), g, np.nan),
    })


def count(detail: pd.DataFrame) -> dict[str, int]:
    """Counts of one comparison: testable, significant (DS higher / lower), after BH, and the
    classes that differ in every seed but are constant within each group."""
    sig = detail["significant"]
    return {
        "n_classes": len(detail), "n_testable": int(detail["testable"].sum()),
        "n_untestable": int((~detail["testable"]).sum()), "n_significant": int(sig.sum()),
        "n_higher": int((sig & (detail["diff"] > 0)).sum()),
        "n_lower": int((sig & (detail["diff"] < 0)).sum()),
        "n_significant_bh": int(detail["significant_bh"].sum()),
        "n_constant_different": int(detail["constant_different"].sum()),
    }


TEST_NAMES = {  # (method, design) -> the test's name in tables
    ("welch", "unpaired"): "welch", ("welch", "paired"): "paired t",
    ("welch", "one-sample"): "one-sample",
    ("permutation", "unpaired"): "permutation", ("permutation", "paired"): "paired permutation",
    ("permutation", "one-sample"): "one-sample permutation",
}


@dataclass(frozen=True)
class TestPlan:
    """Which test (if any) compares a reference group with a DS group, and why."""

    test: str  # a value of TEST_NAMES, or "none"
    reason: str = ""

    @property
    def one_sample(self) -> bool:
        return self.test.startswith("one-sample")

    @property
    def paired(self) -> bool:
        return self.test.startswith("paired")


def plan_test(ref_role: str, n_ref: int, n_ds: int, tests_enabled: bool = True,
              method: str = "welch", pairing: str = "unpaired",
              n_pairs: int | None = None) -> TestPlan:
    """Tests need >= 2 runs (seeds) per group (paired: >= 2 seed-matched pairs); a single
    teacher run is a fixed model (one-sample test). Each comparison says why it has no test:
    too few seeds on a side is said as such (whatever ``analysis.tests``), so that a study of
    one seed, or of unequal seed counts, never reads as tests switched off by the user."""
    name = ROLE_LABELS[ref_role]
    untestable = f"DS vs {name} untestable (a test needs at least 2 seeds per side)"
    if n_ref == 0:
        return TestPlan("none", f"no {name} runs")
    if n_ds < 2:
        return TestPlan("none", f"DS has {n_ds} seed(s) at this T: {untestable}")
    if n_ref < 2 and ref_role != "teacher":
        return TestPlan("none", f"{name} has {n_ref} seed: {untestable}")
    if pairing == "paired" and n_ref >= 2 and (n_pairs or 0) < 2:
        return TestPlan("none", f"only {n_pairs or 0} seed(s) shared by DS and {name}; a "
                        "paired test needs at least 2")
    if not tests_enabled:
        return TestPlan("none", "tests are switched off (analysis.tests: false)")
    if n_ref == 1:  # the teacher: a fixed model
        return TestPlan(TEST_NAMES[(method, "one-sample")])
    if pairing == "paired":
        return TestPlan(TEST_NAMES[(method, "paired")])
    return TestPlan(TEST_NAMES[(method, "unpaired")])


def _matched(seeds: np.ndarray, ref_rows: np.ndarray, ds_rows: np.ndarray,
             partner: np.ndarray | None = None, run_ids: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of matched (ref, DS) pairs: each DS run with the reference run named in
    ``partner`` (its teacher_run_id) when every DS run names one that is present, else with
    the reference run of the same seed; in DS seed order."""
    ds_idx = sorted(np.flatnonzero(ds_rows), key=lambda i: seeds[i])
    if partner is not None and run_ids is not None:
        by_id = {run_ids[i]: i for i in np.flatnonzero(ref_rows)}
        if ds_idx and all(partner[i] in by_id for i in ds_idx):
            return np.array([by_id[partner[i]] for i in ds_idx], int), np.array(ds_idx, int)
    ref = {int(seeds[i]): i for i in np.flatnonzero(ref_rows)}
    pairs = [(ref[int(seeds[i])], i) for i in ds_idx if int(seeds[i]) in ref]
    return (np.array([p[0] for p in pairs], int), np.array([p[1] for p in pairs], int))


COUNT_COLUMNS = [
    "comparison", "count", "T", "quantity", "test", "significance", "n_ref", "n_ds", "n_classes",
    "n_testable", "n_untestable", "n_constant_different", "n_significant", "n_higher", "n_lower",
    "n_significant_bh", "reason"]
DETAIL_COLUMNS = [
    "comparison", "T", "quantity", "class", "class_name", "mean_ref", "mean_ds", "diff", "t", "p",
    "p_bh", "testable", "constant_different", "significant", "significant_bh", "direction",
    "hedges_g", "test"]


def classwise_tables(runs: pd.DataFrame, class_acc: np.ndarray, significance: float = 0.05,
                     tests_enabled: bool = True, class_names: list[str] | None = None,
                     method: str = "welch", pairing: str = "unpaired", resamples: int = 9999,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All class-wise tests of a study.

    ``runs`` has one row per run (columns role, T, accuracy as a fraction; for paired tests seed,
    and optionally run_id and teacher_run_id to pair DS runs with their teachers), aligned with
    the rows of ``class_acc`` [runs, C]. Returns (counts: one row per comparison × T × quantity,
    with the test used and, when none, the reason; detail: one row per comparison × T ×
    quantity × class).
    """
    role = runs["role"].to_numpy()
    temps = runs["T"].to_numpy(dtype=float)
    seeds = runs["seed"].to_numpy() if "seed" in runs else np.arange(len(runs))
    run_ids = runs["run_id"].to_numpy() if "run_id" in runs else None
    partner = runs["teacher_run_id"].to_numpy() if "teacher_run_id" in runs else None
    values = {"raw": np.asarray(class_acc, float),
              "relative": relative_accuracy(class_acc, runs["accuracy"].to_numpy(float))}
    n_classes = values["raw"].shape[1]
    names = class_names or [str(i) for i in range(n_classes)]
    counts, details = [], []
    for temp in sorted(set(temps[role == "ds"])):
        ds_rows = (role == "ds") & (temps == temp)
        for comparison, (ref_role, label) in COMPARISONS.items():
            ref_rows = role == ref_role
            ref_idx, ds_idx = np.flatnonzero(ref_rows), np.flatnonzero(ds_rows)
            m_ref, m_ds = _matched(seeds, ref_rows, ds_rows,
                                   partner if ref_role == "teacher" else None, run_ids)
            plan = plan_test(ref_role, len(ref_idx), len(ds_idx), tests_enabled, method,
                             pairing, len(m_ref))
            if plan.paired:
                ref_idx, ds_idx = m_ref, m_ds
            for q in QUANTITIES:
                row = {"comparison": comparison, "count": label, "T": temp, "quantity": q,
                       "test": plan.test, "significance": significance,
                       "n_ref": len(ref_idx), "n_ds": len(ds_idx), "reason": plan.reason}
                if plan.test != "none":
                    d = compare_classes(values[q][ref_idx], values[q][ds_idx], significance,
                                        one_sample=plan.one_sample, paired=plan.paired,
                                        method=method, resamples=resamples, seed=seed)
                    row.update(count(d))
                    d.insert(0, "class_name", [names[i] for i in d["class"]])
                    for k in ("quantity", "T", "comparison"):
                        d.insert(0, k, row[k])
                    d["test"] = plan.test
                    details.append(d)
                counts.append(row)
    counts_df = pd.DataFrame(counts, columns=COUNT_COLUMNS)
    detail_df = (pd.concat(details, ignore_index=True) if details
                 else pd.DataFrame(columns=DETAIL_COLUMNS))
    return counts_df, detail_df
