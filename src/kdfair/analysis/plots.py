"""The report's figures (matplotlib, Agg backend). Each function takes tables and writes one
figure as PNG (embedded in the HTML) with SVG and PDF twins (for papers).

Conventions: x = temperature T on a log scale; DS as a line with 95 % seed-CI error bars
(± std when there is no CI); teacher and NDS as horizontal reference lines with a CI band;
percent units in the axis labels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm, TwoSlopeNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

if TYPE_CHECKING:
    from kdfair.analysis.measures import Measure

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


# #SC and #TC: colour, marker, line style, dodge direction; they stay apart when equal
COUNT_STYLE = {"#SC": ("tab:red", "o", "-", -1), "#TC": ("tab:green", "s", ":", 1)}


def _dodge(temps) -> float:
    """Factor by which to shift markers left / right of T on the log axis: an eighth of the
    smallest gap between temperatures (in decades), at most 0.04 decades."""
    ts = np.log10(sorted({float(t) for t in temps if np.isfinite(t) and t > 0}))
    gap = float(np.diff(ts).min()) if len(ts) > 1 else 0.3
    return float(10 ** min(gap / 8, 0.04))


def counts_vs_t(path: Path, counts: pd.DataFrame, num_classes: int,
                significance: float) -> Path:
    """#SC and #TC vs T, raw counts (thick) and after Benjamini–Hochberg (thin, dashed, hollow
    markers); #SC and #TC differ in marker and line style and sit slightly left / right of
    their T, so equal counts do not hide one another."""
    tested = counts[counts["test"] != "none"]
    dodge = _dodge(tested["T"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True, layout="constrained")
    top = 0.0
    for ax, q, title in zip(axes, ("relative", "raw"),
                            ("relative accuracy β_c/β (paper)", "raw class accuracy β_c"),
                            strict=True):
        for label, (color, marker, ls, side) in COUNT_STYLE.items():
            rows = tested[(tested["quantity"] == q) & (tested["count"] == label)].sort_values("T")
            if rows.empty:
                continue
            x = rows["T"].to_numpy(float) * dodge ** side
            who = "NDS" if label == "#SC" else "teacher"
            ax.plot(x, rows["n_significant"], marker=marker, ls=ls, color=color,
                    lw=2.4 if side < 0 else 1.6, ms=6, label=f"{label}: DS(T) vs {who}")
            ax.plot(x, rows["n_significant_bh"], ls="--", lw=0.8, marker=marker, ms=5,
                    mfc="white", color=color, label=f"{label} after Benjamini–Hochberg")
            top = max(top, float(np.nanmax(rows[["n_significant", "n_significant_bh"]])))
        ax.set_title(f"t-test on {title}")
        _t_axis(ax, tested["T"])
        ax.grid(alpha=0.3)
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylim(-0.5, max(1.0, top) + 0.5)
    axes[0].set_ylabel(f"classes with p < {significance:g} (of {num_classes})")
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8,
                   title="markers of #SC / #TC drawn slightly left / right of their T",
                   title_fontsize=7, frameon=False)
    fig.suptitle("Classes whose accuracy differs significantly between groups of runs")
    return _save(fig, path, tight=False)


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


def _models(accuracy: pd.DataFrame, fairness: pd.DataFrame, attribute: str) -> pd.DataFrame:
    """One row per model (teacher, NDS, then DS by T) with its accuracy and its fairness for
    ``attribute`` side by side."""
    def keyed(t: pd.DataFrame) -> pd.DataFrame:  # teacher / NDS: one model each, T unused
        return t.assign(_T=np.where(t["role"] == "ds", t["T"].astype(float), -np.inf))

    fair = keyed(fairness[fairness["attribute"] == attribute])
    fair = fair.drop(columns=[c for c in ("T", "n_runs") if c in fair])
    models = keyed(accuracy).merge(fair, on=["role", "_T"], how="inner")
    order = {"teacher": 0, "nds": 1, "ds": 2}
    models = models[models["role"].isin(order)]
    return models.assign(_o=models["role"].map(order)).sort_values(["_o", "_T"])


def _ci_extent(rows: pd.DataFrame, prefix: str) -> np.ndarray | None:
    """(below, above) extents of the 95 % seed CI of ``prefix``; None where the table has none."""
    low, high = f"{prefix}_ci_low", f"{prefix}_ci_high"
    if low not in rows or not np.isfinite(rows[low].to_numpy(float)).any():
        return None
    m = rows[f"{prefix}_mean"].to_numpy(float)
    return np.clip(np.nan_to_num(np.vstack([m - rows[low].to_numpy(float),
                                            rows[high].to_numpy(float) - m])), 0, None)


TRADEOFF_STYLE = {"teacher": ("tab:green", "*", 13, "teacher"),
                  "nds": ("tab:red", "s", 8, "NDS (no distillation)")}


def tradeoff(path: Path, accuracy: pd.DataFrame, fairness: pd.DataFrame, attribute: str,
             measures: Sequence[Measure]) -> Path:
    """Accuracy (x) against each group measure of ``measures`` (y, one panel each) for one
    attribute, the models as points as Fairlearn's dashboard shows them: teacher and NDS
    labelled, DS joined in order of T with each T annotated; bars: 95 % seed CIs where the
    tables have them. Shows whether a fairer model is only a less accurate one."""
    models = _models(accuracy, fairness, attribute)
    fig, axes = plt.subplots(1, len(measures), figsize=(5.4 * len(measures), 4.8),
                             squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], measures, strict=True):
        y = f"{m.column}_mean"
        if y not in models:
            ax.text(0.5, 0.5, f"{m.label}: not in the table", ha="center", transform=ax.transAxes)
            continue
        ok = models[np.isfinite(models["acc_mean"].to_numpy(float))
                    & np.isfinite(models[y].to_numpy(float))]
        for role, (color, marker, size, name) in TRADEOFF_STYLE.items():
            r = ok[ok["role"] == role].iloc[:1]
            if r.empty:
                continue
            ax.errorbar(r["acc_mean"].to_numpy(float), r[y].to_numpy(float),
                        xerr=_ci_extent(r, "acc"), yerr=_ci_extent(r, m.column), fmt=marker,
                        ms=size, color=color, capsize=3, elinewidth=1, label=name, zorder=3)
            ax.annotate(name.split(" ")[0], (r["acc_mean"].iloc[0], r[y].iloc[0]),
                        xytext=(7, 5), textcoords="offset points", fontsize=8, color=color)
        ds = ok[ok["role"] == "ds"]
        if not ds.empty:
            ax.errorbar(ds["acc_mean"].to_numpy(float), ds[y].to_numpy(float),
                        xerr=_ci_extent(ds, "acc"), yerr=_ci_extent(ds, m.column), fmt="-o",
                        ms=5, lw=1.2, color=DS_COLOR, capsize=2, elinewidth=0.7, alpha=0.9,
                        label="DS (distilled), joined in order of T", zorder=2)
            for t, xv, yv in zip(ds["T"], ds["acc_mean"], ds[y], strict=True):
                ax.annotate(f"T={t:g}", (xv, yv), xytext=(4, -10), textcoords="offset points",
                            fontsize=7, color=DS_COLOR,
                            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none",
                                  "alpha": 0.7})
        if m.fairer:
            top = m.fairer == "higher"
            ax.text(0.98, 0.98 if top else 0.02, "better " + ("↗" if top else "↘"),
                    transform=ax.transAxes, ha="right", va="top" if top else "bottom",
                    fontsize=8, color="0.4")
        ax.set_xlabel("test accuracy (%), higher is better")
        ax.set_ylabel(f"{m.heading()}, {m.direction_words()}")
        ax.set_title(f"{m.name}, attribute '{attribute}'")
        ax.grid(alpha=0.3)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes[0]),
                          key=lambda hl: len(hl[0]))
    has_ci = any(c.endswith("_ci_low") and models[c].notna().any() for c in models)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8,
                   title="mean over seeds" + ("; bars: 95% seed CI" if has_ci else ""),
                   title_fontsize=7, frameon=False)
    return _save(fig, path, tight=False)


def individual_vs_t(path: Path, ind: pd.DataFrame, directions: bool, description: str) -> Path:
    """I(f), consistency and confidence vs T; ``directions``: say which way is fairer (not when
    the similarity space groups inputs by a sensitive attribute more than by label)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    _ref_and_ds(axes[0], ind, "individual_mean", "individual_std")
    axes[0].set_ylabel("I(f) (prob. distance per unit input distance)"
                       + (", lower is fairer" if directions else ""))
    axes[0].set_title("Individual unfairness I(f)")
    _ref_and_ds(axes[1], ind, "consistency_mean", "consistency_std")
    axes[1].set_ylabel("k-NN consistency (0–1)" + (", higher is fairer" if directions else ""))
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
