"""The report's figures (matplotlib, Agg backend). Each function takes tables and writes one
figure as PNG (embedded in the HTML) with SVG and PDF twins (for papers).

Conventions: x = temperature T on a log scale; DS as a line with 95 % seed-CI error bars
(± std when there is no CI); teacher and NDS as horizontal reference lines with a CI band;
percent units in the axis labels.
"""

from __future__ import annotations

import textwrap
from contextvars import ContextVar
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm, TwoSlopeNorm  # noqa: E402

REF_STYLE = {"teacher": ("tab:green", "teacher"), "nds": ("tab:red", "NDS (no distillation)")}
DS_COLOR = "tab:blue"
MAX_ROWS = 60  # heat-map rows (classes) shown with labels / at most
VECTOR: ContextVar[bool] = ContextVar("vector", default=True)  # also write .svg and .pdf


def _save(fig, path: Path, tight: bool = True) -> Path:
    """Write ``path`` (PNG) and its .svg and .pdf twins."""
    if tight:
        fig.tight_layout()
    extra = {} if tight else {"bbox_inches": "tight"}
    fig.savefig(path, dpi=150, **extra)
    for ext in (".svg", ".pdf") if VECTOR.get() else ():
        fig.savefig(path.with_suffix(ext), **extra)
    plt.close(fig)
    return path


def _t_axis(ax, temps) -> None:
    """x axis = temperature on a log scale, ticks at the temperatures studied."""
    temps = sorted(set(float(t) for t in temps if np.isfinite(t) and t > 0))
    if temps:
        ax.set_xscale("log")
        ax.minorticks_off()
    if 0 < len(temps) <= 15:
        ax.set_xticks(temps, [f"{t:g}" for t in temps])
    ax.set_xlabel("temperature T (log scale)")


def _spread(rows: pd.DataFrame, mean: str, std: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(below, above) error extents: the 95 % seed CI when the table has it, else ± std."""
    low, high = mean.replace("_mean", "_ci_low"), mean.replace("_mean", "_ci_high")
    m = rows[mean].to_numpy(float)
    if low in rows and np.isfinite(rows[low].to_numpy(float)).any():
        return (np.nan_to_num(m - rows[low].to_numpy(float)),
                np.nan_to_num(rows[high].to_numpy(float) - m), "95% seed CI")
    s = np.nan_to_num(rows[std].to_numpy(float))
    return s, s, "± std"


def _ref_and_ds(ax, table: pd.DataFrame, mean: str, std: str, label: str | None = None) -> None:
    """Teacher / NDS bands and the DS line of one metric on one axis."""
    for role, (color, name) in REF_STYLE.items():
        rows = table[table["role"] == role]
        if rows.empty or not np.isfinite(rows[mean].iloc[0]):
            continue
        m = float(rows[mean].iloc[0])
        below, above, what = _spread(rows.iloc[:1], mean, std)
        ax.axhline(m, color=color, lw=1.5, label=f"{name}: {m:.3g} (band: {what})")
        if below[0] + above[0] > 0:
            ax.axhspan(m - below[0], m + above[0], color=color, alpha=0.15, lw=0)
    ds = table[table["role"] == "ds"].sort_values("T")
    if not ds.empty:
        below, above, what = _spread(ds, mean, std)
        ax.errorbar(ds["T"], ds[mean], yerr=np.vstack([below, above]), marker="o",
                    color=DS_COLOR, capsize=3, label=label or f"DS (distilled), {what}")
    _t_axis(ax, ds["T"])
    ax.grid(alpha=0.3)


def accuracy_vs_t(path: Path, acc: pd.DataFrame, n_seeds: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _ref_and_ds(ax, acc, "acc_mean", "acc_std")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy vs temperature (mean over {n_seeds} seeds)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def counts_vs_t(path: Path, counts: pd.DataFrame, num_classes: int,
                significance: float) -> Path:
    tested = counts[counts["test"] != "none"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, q, title in zip(axes, ("relative", "raw"),
                            ("relative accuracy β_c/β (paper)", "raw class accuracy β_c"),
                            strict=True):
        for label, color in (("#SC", "tab:red"), ("#TC", "tab:green")):
            rows = tested[(tested["quantity"] == q) & (tested["count"] == label)].sort_values("T")
            if rows.empty:
                continue
            who = "NDS" if label == "#SC" else "teacher"
            ax.plot(rows["T"], rows["n_significant"], marker="o", color=color,
                    label=f"{label}: DS(T) vs {who}")
            ax.plot(rows["T"], rows["n_significant_bh"], ls="--", marker=".", color=color,
                    label=f"{label} after Benjamini–Hochberg")
        ax.set_title(f"t-test on {title}")
        _t_axis(ax, tested["T"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"classes with p < {significance:g} (of {num_classes})")
    fig.suptitle("Classes whose accuracy differs significantly between groups of runs")
    return _save(fig, path)


def fairness_vs_t(path: Path, fair: pd.DataFrame, attribute: str, drawn) -> Path:
    """One panel per measure of ``drawn`` (registry measures) for one attribute."""
    rows = fair[fair["attribute"] == attribute]
    fig, axes = plt.subplots(1, len(drawn), figsize=(5.5 * len(drawn), 4.5), squeeze=False)
    for ax, m in zip(axes[0], drawn, strict=True):
        _ref_and_ds(ax, rows, f"{m.column}_mean", f"{m.column}_std")
        ds = rows[rows["role"] == "ds"].sort_values("T")
        if f"{m.column}_testset_ci_low" in rows and not ds.empty:
            ax.fill_between(ds["T"], ds[f"{m.column}_testset_ci_low"],
                            ds[f"{m.column}_testset_ci_high"], color=DS_COLOR, alpha=0.12,
                            label="DS 95% test-set bootstrap CI")
        ax.set_ylabel(f"{m.heading()}, {m.direction_words()}")
        ax.set_title(f"{m.name}, attribute '{attribute}'")
        ax.legend(fontsize=8)
    return _save(fig, path)


def individual_vs_t(path: Path, ind: pd.DataFrame, description: str) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    _ref_and_ds(axes[0], ind, "individual_mean", "individual_std")
    axes[0].set_ylabel("I(f) (prob. distance per unit input distance), lower is fairer")
    axes[0].set_title("Individual unfairness I(f)")
    _ref_and_ds(axes[1], ind, "consistency_mean", "consistency_std")
    axes[1].set_ylabel("k-NN consistency (0–1), higher is fairer")
    axes[1].set_title("Consistency (Zemel et al.)")
    _ref_and_ds(axes[2], ind, "confidence_mean", "confidence_std")
    axes[2].set_ylabel("mean max-probability (0–1)")
    axes[2].set_title("Confidence (read I(f) beside it)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"Individual fairness; neighbours: {description}", fontsize=10)
    return _save(fig, path)


def counterfactual_vs_t(path: Path, cf: pd.DataFrame) -> Path:
    attrs = list(dict.fromkeys(cf["attribute"]))
    fig, axes = plt.subplots(len(attrs), 2, figsize=(11, 4.2 * len(attrs)), squeeze=False)
    for (ax_flip, ax_dist), attr in zip(axes, attrs, strict=True):
        rows = cf[cf["attribute"] == attr]
        _ref_and_ds(ax_flip, rows, "cf_flip_mean", "cf_flip_std")
        ax_flip.set_ylabel("flip rate (%), lower is fairer")
        ax_flip.set_title(f"Prediction changes when only '{attr}' changes")
        _ref_and_ds(ax_dist, rows, "cf_distance_mean", "cf_distance_std")
        ax_dist.set_ylabel("I_cf = mean D(f(x), f(x′)), lower is fairer")
        ax_dist.set_title(f"Output distance to the '{attr}' counterfactual")
        for ax in (ax_flip, ax_dist):
            ax.legend(fontsize=8)
    return _save(fig, path)


def _class_ticks(ax, names: list[str], axis: str = "y") -> None:
    if len(names) <= MAX_ROWS:
        ticks = np.arange(len(names))
        if axis == "y":
            ax.set_yticks(ticks, names, fontsize=7)
        else:
            ax.set_xticks(ticks, names, fontsize=7, rotation=90)
    elif axis == "y":
        ax.set_ylabel("class (index)")


def class_change_heatmap(path: Path, change: np.ndarray, significant: np.ndarray,
                         names: list[str], temps: list[float], title: str,
                         colour_label: str = "DS − NDS class accuracy (percentage points)",
                         constant: np.ndarray | None = None) -> Path:
    """Rows: classes, columns: T; colour: the tested difference; dots: significant by the same
    test; crosses (``constant``): different in every seed, untestable by Welch."""
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(temps) + 3),
                                    min(14, max(4, 0.22 * len(names) + 2))))
    lim = float(np.nanmax(np.abs(change))) if np.isfinite(change).any() else 1.0
    lim = lim or 1.0
    im = ax.imshow(change, aspect="auto", cmap="RdBu",
                   norm=TwoSlopeNorm(0.0, -lim, lim), interpolation="nearest")
    rr, cc = np.nonzero(significant)
    ax.scatter(cc, rr, s=12 if len(names) <= MAX_ROWS else 3, c="black", marker="o",
               label="significant")
    if constant is not None and constant.any():
        kr, kc = np.nonzero(constant)
        ax.scatter(kc, kr, s=30, c="black", marker="x", label="different in every seed "
                   "(untestable by Welch)")
        rr = np.concatenate([rr, kr])
    ax.set_xticks(np.arange(len(temps)), [f"{t:g}" for t in temps])
    ax.set_xlabel("temperature T")
    _class_ticks(ax, names)
    fig.colorbar(im, ax=ax, label=colour_label)
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=10)
    if len(rr):
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.08), fontsize=8, frameon=False)
    return _save(fig, path)


def disagreement_classes(path: Path, shares: dict[str, np.ndarray], names: list[str],
                         temps: list[float]) -> Path:
    """Per true class (rows) and T (columns): % of inputs on which two models disagree."""
    fig, axes = plt.subplots(1, len(shares), figsize=(5.5 * len(shares) + 1,
                                                      min(14, max(4, 0.22 * len(names) + 2))),
                             squeeze=False)
    vmax = max(float(np.nanmax(s)) if np.isfinite(s).any() else 0 for s in shares.values()) or 1
    for ax, (title, s) in zip(axes[0], shares.items(), strict=True):
        im = ax.imshow(s, aspect="auto", cmap="viridis", vmin=0, vmax=vmax,
                       interpolation="nearest")
        ax.set_xticks(np.arange(len(temps)), [f"{t:g}" for t in temps])
        ax.set_xlabel("temperature T")
        _class_ticks(ax, names)
        ax.set_title(title)
    fig.colorbar(im, ax=list(axes[0]), label="inputs with different predictions (%)")
    fig.suptitle("Disagreement per true class (mean over seed pairs)")
    return _save(fig, path, tight=False)


def disagreement_matrices(path: Path, mats: dict[str, np.ndarray], names: list[str]) -> Path:
    """Off-diagonal prediction-vs-prediction counts (mean over seed pairs), one panel per pair."""
    c = len(names)
    fig, axes = plt.subplots(1, len(mats), figsize=(6 * len(mats) + 1, 5.5), squeeze=False)
    vmax = max(float(m.max()) for m in mats.values()) or 1.0
    for ax, (title, m) in zip(axes[0], mats.items(), strict=True):
        shown = np.where(m > 0, m, np.nan)
        norm = LogNorm(vmin=max(min(vmax, 0.1), 1e-3), vmax=max(vmax, 0.2)) if c > 20 else None
        im = ax.imshow(shown, cmap="magma_r", norm=norm, vmin=None if norm else 0,
                       vmax=None if norm else vmax, interpolation="nearest")
        if c <= MAX_ROWS:
            _class_ticks(ax, names, "y")
            _class_ticks(ax, names, "x")
        ax.set_ylabel("reference model's prediction")
        ax.set_xlabel("DS prediction")
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=list(axes[0]), label="test inputs (mean over seed pairs)"
                 + (", log scale" if c > 20 else ""))
    fig.suptitle("Where predictions differ (diagonal left out)")
    return _save(fig, path, tight=False)
