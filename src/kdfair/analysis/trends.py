"""Trend tests in T for every headline quantity and for #SC / #TC (Spearman, permutation p).

The paper's claims are trends in T (#SC rises, #TC falls, DPD/EOD fall up to T = 10 and rise
beyond). Each series here is tested twice: over T ≤ 10 and over all T. Run-level values are used
where there are runs (each DS run one point); #SC / #TC have one value per T.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from kdfair.analysis import measures
from kdfair.analysis.capability import detectable_difference, pooled_sd
from kdfair.analysis.seedstats import trend_test

LOW_T = 10.0
COLUMNS = ["quantity", "label", "unit", "range", "n_points", "n_T", "rho", "p", "p_bh",
           "significant", "direction", "span", "resolution", "min_p", "partial_rho",
           "partial_p"]


def _series(tables: dict[str, pd.DataFrame]) -> list[tuple[str, str, str, pd.DataFrame]]:
    """(quantity key, label, unit, frame with columns T and value) for every headline series:
    each headline measure of the registry (per attribute where it has one), disagreement and
    #SC / #TC."""
    out = []
    runs = tables.get("runs", pd.DataFrame())
    ds = runs[runs["role"] == "ds"] if not runs.empty else runs
    acc = measures.get("accuracy")
    out.append((acc.key, f"DS {acc.label}", acc.unit, ds.assign(value=ds.get(acc.key))))
    run_acc = dict(zip(ds["run_id"], ds["accuracy"], strict=True)) if "run_id" in ds else {}
    for family in ("group", "individual", "counterfactual"):
        out += _measure_series(tables, family, ds, run_acc)
    dr = tables.get("disagreement_runs", pd.DataFrame())
    for comparison, who in (("teacher_vs_ds", "teacher"), ("nds_vs_ds", "NDS")):
        rows = dr[dr["comparison"] == comparison] if not dr.empty else dr
        if not rows.empty:
            out.append((f"disagreement:{comparison}", f"disagreement DS vs {who}", "%",
                        rows.assign(value=rows["disagreement"],
                                    run_acc=rows["ds_run"].map(run_acc))))
    counts = tables.get("classwise_counts", pd.DataFrame())
    if not counts.empty:
        for q in ("relative", "raw"):
            for label in ("#SC", "#TC"):
                rows = counts[(counts["quantity"] == q) & (counts["count"] == label)
                              & (counts["test"] != "none")]
                if not rows.empty:
                    out.append((f"{label}:{q}", f"{label} ({q})", "classes",
                                rows.assign(value=rows["n_significant"].astype(float))))
    return [s for s in out if not s[3].empty and "value" in s[3]]


def _measure_series(tables: dict[str, pd.DataFrame], family: measures.Family,
                    ds: pd.DataFrame, run_acc: dict[str, float]
                    ) -> list[tuple[str, str, str, pd.DataFrame]]:
    """The DS series of each headline measure of one family (per attribute where it has one),
    each point with its run's accuracy (``run_acc``, for the partial test)."""
    chosen = measures.of(family, headline_only=True)
    if family == "individual":
        return [(m.key, f"DS {m.label}", m.unit, ds.assign(value=ds[m.key], run_acc=ds[
            "accuracy"])) for m in chosen if "individual" in tables]
    per_run = tables.get(RUN_TABLES[family], pd.DataFrame())
    if per_run.empty:
        return []
    out = []
    for attr in dict.fromkeys(per_run["attribute"]):
        rows = per_run[(per_run["role"] == "ds") & (per_run["attribute"] == attr)]
        out += [(measures.per_attribute_key(m, attr), f"DS {m.label} '{attr}'", m.unit,
                 rows.assign(value=rows[m.key], run_acc=rows["run_id"].map(run_acc)))
                for m in chosen]
    return out


RUN_TABLES = {"group": "fairness_runs", "counterfactual": "counterfactual_runs"}


def trend_table(tables: dict[str, pd.DataFrame], significance: float, resamples: int,
                seed: int = 0) -> pd.DataFrame:
    """One row per series and T range: Spearman ρ of the values with T and its permutation p."""
    rows = []
    for key, label, unit, frame in _series(tables):
        t_all = frame["T"].to_numpy(float)
        ranges = [("all T", np.ones(len(t_all), bool))]
        if np.nanmax(t_all) > LOW_T and (t_all <= LOW_T).sum() >= 3:
            ranges.insert(0, (f"T ≤ {LOW_T:g}", t_all <= LOW_T))
        for name, keep in ranges:
            t, v = t_all[keep], frame["value"].to_numpy(float)[keep]
            rho, p, n = trend_test(t, v, resamples, seed)
            sig = bool(np.isfinite(p) and p < significance)
            span, resolution = span_and_resolution(t, v, significance)
            acc = frame["run_acc"].to_numpy(float)[keep] if "run_acc" in frame else None
            partial = partial_spearman(t, v, acc) if acc is not None else (math.nan, math.nan)
            n_t = len(np.unique(t))
            rows.append({"quantity": key, "label": label, "unit": unit, "range": name,
                         "n_points": n, "n_T": n_t, "rho": rho, "p": p,
                         "significant": sig,
                         "direction": ("rises" if rho > 0 else "falls") if sig else "",
                         "span": span, "resolution": resolution,
                         "min_p": smallest_p(n_t) if n_t == n else math.nan,
                         "partial_rho": partial[0], "partial_p": partial[1]})
    out = pd.DataFrame(rows, columns=COLUMNS)
    ok = out["p"].notna()
    if ok.any():  # many trend tests: Benjamini–Hochberg over all of them, reported beside p
        out.loc[ok, "p_bh"] = stats.false_discovery_control(out.loc[ok, "p"].to_numpy(float))
    return out


def span_and_resolution(temps: np.ndarray, values: np.ndarray, level: float
                        ) -> tuple[float, float]:
    """(max − min of the per-T means, the difference between two T a Welch test at ``level``
    detects with 80 % power given the pooled within-T spread); resolution NaN with one value
    per T. A trend whose span is below its resolution is too small to be read as a finding."""
    frame = pd.DataFrame({"T": temps, "v": values}).dropna()
    if frame.empty:
        return math.nan, math.nan
    span = float(np.ptp(frame.groupby("T")["v"].mean()))
    sd, n = pooled_sd(frame["v"], frame["T"])
    if not np.isfinite(sd):
        return span, math.nan
    return span, detectable_difference(sd, n, sd, n, level)


def trend_words(row: pd.Series, significance: float) -> str:
    """'rises with T (Spearman ρ = 0.71, permutation p = 0.003, 15 runs, T ≤ 10)' or 'shows no
    monotone trend in T (…)'; always with the test."""
    test = (f"Spearman ρ = {row['rho']:.2f}, permutation p = {row['p']:.3g}, "
            f"{int(row['n_points'])} points, {row['range']}")
    if np.isfinite(row.get("p_bh", math.nan)):
        test += f"; after Benjamini–Hochberg over all trend tests p = {row['p_bh']:.3g}"
    if not np.isfinite(row["p"]):
        why = ("is the same at every T" if row["n_points"] >= 3 and row["n_T"] >= 2
               else "has too few points")
        return f"{why}: no trend to test ({int(row['n_points'])} points, {row['range']})"
    if row["significant"]:
        return f"{row['direction']} with T ({test})"
    floor = row["min_p"]  # NaN unless one value per T
    limit = (f"; with {int(row['n_points'])} points no p below {floor:.2g} is possible"
             if np.isfinite(floor) and floor >= significance else "")
    return f"shows no monotone trend in T at p < {significance:g} ({test}{limit})"


def partial_spearman(temps: np.ndarray, values: np.ndarray, accuracy: np.ndarray
                     ) -> tuple[float, float]:
    """(ρ, two-sided p) of values with T controlling for accuracy: the Pearson correlation of
    the rank residuals of values and of T after a linear fit on the ranks of accuracy, p from
    the t distribution with n − 3 degrees of freedom. A fairness trend that vanishes here
    follows accuracy rather than T. NaN with fewer than 5 points or no variation left."""
    frame = pd.DataFrame({"t": temps, "v": values, "a": accuracy}).dropna()
    n = len(frame)
    if n < 5 or frame.nunique().min() < 2:
        return math.nan, math.nan
    ranks = frame.rank().to_numpy(float)
    a = np.column_stack([np.ones(n), ranks[:, 2]])
    res = ranks[:, :2] - a @ np.linalg.lstsq(a, ranks[:, :2], rcond=None)[0]
    scale = np.sqrt((res**2).sum(0))
    if (scale < 1e-12 * n).any():
        return math.nan, math.nan
    r = float(np.clip((res[:, 0] @ res[:, 1]) / (scale[0] * scale[1]), -1.0, 1.0))
    if abs(r) == 1.0:
        return r, 0.0
    tstat = r * math.sqrt((n - 3) / (1 - r * r))
    return r, float(2 * stats.t.sf(abs(tstat), n - 3))


def smallest_p(n: int) -> float:
    """The smallest two-sided permutation p of Spearman's ρ with n distinct points: 2 / n!."""
    return min(1.0, 2.0 / math.factorial(n)) if n > 0 else 1.0
