"""Shared pieces of the analysis: the Analysis record, role labels, grouping and formatting."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdfair.analysis import measures
from kdfair.analysis.individual import NeighbourGraph
from kdfair.analysis.records import Finding
from kdfair.analysis.seedstats import seed_ci
from kdfair.config import AnalysisConfig
from kdfair.store import ROLE_LABELS
from kdfair.store import StudyIndex as Store

ROLE_ORDER = {"teacher": 0, "nds": 1, "ds": 2}


@dataclass
class Analysis:
    """Everything the analysis computed, including what only the report needs."""

    store: Store
    options: AnalysisConfig
    options_source: str
    tables: dict[str, pd.DataFrame]
    notes: list[str]
    findings: list[Finding] = field(default_factory=list)
    key_results: list[str] = field(default_factory=list)
    graph: NeighbourGraph | None = None
    norm: str = "tv"
    matrices: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    no_individual: str = ""  # why individual fairness was skipped (a note), if it was

    def table(self, name: str) -> pd.DataFrame:
        """A table by name, empty if there is none of that name."""
        return self.tables.get(name, pd.DataFrame())


def model_label(role: str, temperature: float) -> str:
    return f"DS T={temperature:g}" if role == "ds" else ROLE_LABELS[role]


def sort_roles(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order teacher, NDS, DS by increasing T."""
    key = df["role"].map(ROLE_ORDER) * 1e6 + df["T"].fillna(-1)
    return df.assign(_k=key).sort_values("_k", kind="stable").drop(columns="_k").reset_index(
        drop=True)


def by_group(df: pd.DataFrame, cols: list[str], extra: tuple[str, ...] = (),
             resamples: int = 0, seed: int = 0, ci: str = "t",
             bounds: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Mean and sample std (ddof 1; NaN for one run) of ``cols`` per role, T (and ``extra``);
    with ``resamples`` also the 95 % interval of the mean over the group's runs
    (``<col>_ci_low/high``; ``ci``: "t" or "bootstrap", see :func:`seedstats.seed_ci`),
    clipped to the values the column can take (the registry's measures, and ``bounds``)."""
    keys = ["role", "T", *extra]
    stats_ = ("mean", "std", "ci_low", "ci_high") if resamples else ("mean", "std")
    if df.empty:
        return pd.DataFrame(columns=[*keys, "n_runs", *(f"{c}_{s}" for c in cols
                                                        for s in stats_)])
    g = df.groupby(keys, dropna=False, sort=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out.insert(0, "n_runs", g.size())
    if resamples:
        # groups come in the order of ``out`` (both sort=False); NaN keys cannot be looked up
        cis = [seed_ci(sub[cols].to_numpy(float), resamples, seed, label=key_label(key),
                       method=ci) for key, sub in g]
        limits = {**measures.ranges(), **(bounds or {})}
        for j, c in enumerate(cols):
            low, high = limits.get(c, (-math.inf, math.inf))
            out.insert(out.columns.get_loc(f"{c}_std") + 1, f"{c}_ci_low",
                       [max(interval[0][j], low) for interval in cis])
            out.insert(out.columns.get_loc(f"{c}_ci_low") + 1, f"{c}_ci_high",
                       [min(interval[1][j], high) for interval in cis])
    return sort_roles(out.reset_index())


def key_label(key: Any) -> str:
    """The text a group key seeds its bootstrap stream with: the same for numpy and Python
    scalars (``np.float64(2.0)`` and ``2.0`` print differently), so a CI never depends on how
    pandas happened to type the key."""
    parts = key if isinstance(key, tuple) else (key,)
    return repr(tuple(p.item() if isinstance(p, np.generic) else p for p in parts))


def rows_of(table: pd.DataFrame, role: str, temperature: float) -> pd.DataFrame:
    """Rows of one model: role and T (T is NaN for teacher and NDS)."""
    same_t = (table["T"] == temperature) | (table["T"].isna() & pd.isna(temperature))
    return table[(table["role"] == role) & same_t]


def ci_text(mean: float, low: float, high: float, digits: int = 2, unit: str = "") -> str:
    """'95.80 % [95.10, 96.30]' (mean, then the 95 % CI when there is one)."""
    if mean is None or not np.isfinite(mean):
        return "–"
    s = f"{mean:.{digits}f}{unit}"
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        # a zero-width interval is no 95 % interval: every seed gave the same value
        s += " [all seeds equal]" if low == high else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return s


def fmt_t(t: float) -> str:
    return "" if t is None or (isinstance(t, float) and math.isnan(t)) else f"{t:g}"


def config_of(store: Store) -> dict[str, Any]:
    """The bits of experiment.json the report states (missing ones as None)."""
    e = store.experiment
    dist = e.get("distill") or {}

    def arch(role: str) -> str | None:
        return ((e.get(role) or {}).get("model") or {}).get("arch")

    return {"name": e.get("name") or store.root.name,
            "dataset": (e.get("dataset") or {}).get("name") or store.data.get("dataset"),
            "teacher": arch("teacher"), "student": arch("student"), "alpha": dist.get("alpha"),
            "t2_scaling": dist.get("t2_scaling"), "teacher_policy": dist.get("teacher_policy"),
            "methods": [m.get("name") for m in dist.get("methods") or [] if isinstance(m, dict)]
            or ["kd"]}
