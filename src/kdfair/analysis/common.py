"""Shared pieces of the analysis: the Analysis record, role labels, grouping and formatting."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdfair.analysis.individual import NeighbourGraph
from kdfair.analysis.load import ROLE_LABELS, Store
from kdfair.config import AnalysisConfig

ROLE_ORDER = {"teacher": 0, "nds": 1, "ds": 2}


@dataclass
class Analysis:
    """Everything the analysis computed, including what only the report needs."""

    store: Store
    options: AnalysisConfig
    options_source: str
    tables: dict[str, pd.DataFrame]
    notes: list[str]
    findings: list[str] = field(default_factory=list)
    graph: NeighbourGraph | None = None
    norm: str = "tv"
    matrices: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)

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


def by_group(df: pd.DataFrame, cols: list[str], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean and sample std (ddof 1; NaN for one run) of ``cols`` per role, T (and ``extra``)."""
    keys = ["role", "T", *extra]
    if df.empty:
        return pd.DataFrame(columns=[*keys, "n_runs", *(f"{c}_{s}" for c in cols
                                                        for s in ("mean", "std"))])
    g = df.groupby(keys, dropna=False, sort=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out.insert(0, "n_runs", g.size())
    return sort_roles(out.reset_index())


def rows_of(table: pd.DataFrame, role: str, temperature: float) -> pd.DataFrame:
    """Rows of one model: role and T (T is NaN for teacher and NDS)."""
    same_t = (table["T"] == temperature) | (table["T"].isna() & pd.isna(temperature))
    return table[(table["role"] == role) & same_t]


def pm(mean: float, std: float, digits: int = 2) -> str:
    """'mean ± std' (just the mean when std is undefined; '–' when the mean is)."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


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
            "t2_scaling": dist.get("t2_scaling"), "teacher_policy": dist.get("teacher_policy")}
