"""Several distillation methods in one study: each method's distilled students are analysed as
the paper analyses KD's — against the same teacher and NDS, with the same tests — and shown
side by side, with the teacher-free label-smoothing control beside the NDS.

Nothing here tests one method against another: the comparison puts each method's own tests
(vs NDS, vs teacher) and seed CIs next to each other, and the ranking orders methods by those
numbers, saying which measure each order is by.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from kdfair.analysis import measures, records
from kdfair.store.index import RunInfo, StudyIndex

CONTROL_T = 0.0  # a control's runs stand in the DS slot of its analysis at this "temperature"


def methods_in(store: StudyIndex) -> tuple[list[str], list[str]]:
    """(DS methods, controls) present in the store; DS methods in the experiment's order."""
    order = [m.get("name") for m in (store.experiment.get("distill") or {}).get("methods") or []
             if isinstance(m, dict)]
    ds = {r.method for r in store.runs if r.role == "ds"}
    controls = sorted({r.method for r in store.runs if r.role == "nds" and r.method})
    ranked = [m for m in order if m in ds] + sorted(ds - set(order))
    return ranked, controls


def only(store: StudyIndex, method: str, control: bool = False) -> StudyIndex:
    """The store as the paper's analysis sees it for one method: teacher, plain NDS, and that
    method's students as the DS runs (a control's runs, at ``CONTROL_T``)."""
    runs: list[RunInfo] = []
    for r in store.runs:
        if r.role == "teacher" or (r.role == "nds" and r.method is None):
            runs.append(r)
        elif control and r.role == "nds" and r.method == method:
            runs.append(dataclasses.replace(r, role="ds", temperature=CONTROL_T))
        elif not control and r.role == "ds" and r.method == method:
            runs.append(r)
    return dataclasses.replace(store, runs=runs, skipped=list(store.skipped),
                               notes=list(store.notes))


def comparison_table(summaries: dict[tuple[str, bool], pd.DataFrame]) -> pd.DataFrame:
    """One row per (method, T): each method's DS rows of its own Summary (accuracy with seed CI,
    #SC / #TC, DPD / EOD per attribute, I(f), confidence); controls have no T."""
    rows = []
    for (method, control), summary in summaries.items():
        ds = summary[summary["role"] == "ds"]
        for _, r in ds.iterrows():
            row = {"method": method, "kind": "control (no teacher)" if control else "distilled",
                   "T": math.nan if control else r["T"]}
            row.update({k: v for k, v in r.items() if k not in ("model", "role", "T")})
            rows.append(row)
    return pd.DataFrame(rows)


def ranking_table(comparison: pd.DataFrame, attributes: list[str],
                  warnings: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per method: its best accuracy over T (and that T), and the mean over T of #SC,
    #TC, each attribute's headline group measures and I(f) — each the method's own numbers;
    no test between methods. ``degenerate``: its analysis warned that its students predict few
    classes (then DPD / EOD near 0 mean a collapsed model, not a fair one)."""
    rows = []
    group = [m for m in measures.of("group", headline_only=True) if m.at_a_glance]
    individual = measures.get("individual")
    for method, g in comparison.groupby("method", sort=False):
        best = g.loc[g["acc_mean"].idxmax()] if g["acc_mean"].notna().any() else g.iloc[0]
        row = {"method": method, "kind": g["kind"].iloc[0], "temperatures": int(g["T"].notna()
                                                                                .sum()),
               "best_acc_mean": best["acc_mean"], "best_acc_T": best["T"]}
        for col in ("#SC", "#TC"):
            row[f"mean {col}"] = g[col].mean() if col in g else math.nan
        for attr in attributes:
            for m in group:
                key = f"{measures.per_attribute_key(m, attr)}_mean"
                row[f"mean {m.label} {attr}"] = g[key].mean() if key in g else math.nan
        key = f"{individual.key}_mean"
        row[f"mean {individual.label}"] = g[key].mean() if key in g else math.nan
        table = (warnings or {}).get(method, pd.DataFrame())
        row["degenerate"] = records.has(table, "degenerate", role="ds")
        rows.append(row)
    return pd.DataFrame(rows)


def ranking_sentences(ranking: pd.DataFrame) -> list[str]:
    """Which method has the lowest value of each measure (ties named), worded as what it is."""
    out = []
    distilled = ranking[ranking["kind"] == "distilled"]
    if len(distilled) < 2:
        return out
    collapsed = distilled.loc[distilled["degenerate"], "method"].tolist()
    if collapsed:
        out.append(f"Left out of the lowest-bias lines below: {', '.join(collapsed)}, whose "
                   "students predict few classes (see the warnings): low DPD / EOD there means "
                   "a collapsed model, not a fair one.")
    usable = distilled[~distilled["degenerate"]]
    for col in [c for c in distilled.columns if c.startswith("mean ")]:
        vals = (distilled if col in ("mean #SC", "mean #TC") else usable)[col].dropna()
        if vals.empty:
            continue
        low = vals.min()
        names = distilled.loc[vals[vals == low].index, "method"].tolist()
        out.append(f"Lowest {col[5:]} averaged over T: {', '.join(names)} ({low:.4g}); "
                   "each method's own numbers, not a test between methods.")
    return out
