"""'Paper vs this study': the paper's reported numbers beside a study's own, by experiment name.

The numbers ship as package data (``kdfair/presets/paper-numbers.yaml``, keyed by the experiment
name of each paper preset). For each reported value: this study's seed mean, its 95 % bootstrap
CI over seeds, the difference (this study − paper) and whether the paper's value lies in the CI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

from kdfair.analysis import measures
from kdfair.analysis.common import model_label, rows_of

COLUMNS = ["source", "quantity", "model", "role", "T", "paper", "this_study", "ci_low",
           "ci_high", "difference", "paper_in_ci"]


def paper_numbers() -> dict:
    """The whole file: experiment name -> {attribute?, approximate?, <source>: {model: values}}."""
    text = resources.files("kdfair.presets").joinpath("paper-numbers.yaml").read_text("utf-8")
    return yaml.safe_load(text) or {}


def _model(key: str) -> tuple[str, float]:
    if key.startswith("T="):
        return "ds", float(key[2:])
    return key, math.nan


def _study_value(tables: dict[str, pd.DataFrame], quantity: str, role: str, temp: float,
                 attribute: str | None, test_on_counts: pd.DataFrame) -> tuple[float, ...]:
    """(mean, CI low, CI high) of this study for one paper cell; NaN where it has none."""
    nan = (math.nan, math.nan, math.nan)
    if quantity in ("#SC", "#TC"):
        c = test_on_counts
        r = c[(c["count"] == quantity) & (c["T"] == temp) & (c["test"] != "none")] \
            if not c.empty else c
        return (float(r["n_significant"].iloc[0]), math.nan, math.nan) if len(r) else nan
    m = measures.get(quantity)
    col = m.column
    t = tables.get(m.table, pd.DataFrame())
    if t.empty:
        return nan
    if m.family == "group":
        t = t[t["attribute"] == attribute]
    r = rows_of(t, role, temp)
    if r.empty:
        return nan
    r = r.iloc[0]
    return tuple(float(r.get(f"{col}_{s}", math.nan)) for s in ("mean", "ci_low", "ci_high"))


def _label(quantity: str, attribute: str | None) -> str:
    """The quantity as the table names it: 'accuracy (%)', "EOD 'gender' (%)", '#SC'."""
    measure, _ = measures.split_key(quantity)
    if measure is None:
        return quantity
    if measure.family == "group" and attribute:
        return f"{measure.label} '{attribute}'" + (f" ({measure.unit})" if measure.unit else "")
    return measure.heading()


def paper_entry(name: str) -> tuple[str, dict | None]:
    """(the paper study's key, its numbers) for experiment ``name`` or its alias; None when
    the paper reports nothing for it."""
    numbers = paper_numbers()
    key = (numbers.get("aliases") or {}).get(name, name)
    entry = numbers.get(key)
    return key, entry if isinstance(entry, dict) and name != "aliases" else None


def paper_gap(name: str) -> tuple[float | None, str | None]:
    """(teacher − NDS accuracy in points, the data set's name) the paper reports for the
    experiment ``name`` (or its alias); (None, None) when it reports no such pair."""
    key, entry = paper_entry(name)
    if entry is None:
        return None, None
    for models in entry.values():
        if isinstance(models, dict):
            t, n = (models.get(r, {}).get("accuracy") if isinstance(models.get(r), dict)
                    else None for r in ("teacher", "nds"))
            if t is not None and n is not None:
                return float(t) - float(n), str(key).split("-")[0]
    return None, None


# What a study may change without changing the protocol the paper's numbers describe: where and
# how it runs (precision and threads included: the engine-independence check bounds their
# effect), where it is stored, where its files are and whether they may be downloaded, and the
# report's figure formats. A setting, or a section of settings.
OPERATIONAL = ("name", "device", "engine", "store", "slurm", "tracking", "dataset.root",
               "dataset.download", "teacher.model.download", "student.model.download",
               "analysis.vector_figures")


def _operational(path: str) -> bool:
    return any(path == op or path.startswith(op + ".") for op in OPERATIONAL)


def protocol_changes(experiment: Mapping[str, Any]) -> pd.DataFrame | None:
    """How a study differs, in what it trains and measures, from the preset of the paper's
    study its name stands for (``paper_entry``: itself, or for an alias such as
    ``trifeature-cpu`` the paper's ``trifeature-r20-lenet5``): one row per setting, columns
    ``setting``, the preset's name, ``this study``; None when no such preset exists. Both
    sides are read through the experiment model, so a field an older kdfair did not write counts
    as its default."""
    from kdfair.config import experiment_from_dict, load_experiment
    from kdfair.errors import ConfigError
    from kdfair.overrides import differences
    from kdfair.presets import preset_names

    name = str(experiment.get("name") or "")
    key, _ = paper_entry(name)
    presets = preset_names()
    target = key if key in presets else name if name in presets else None
    if target is None:
        return None
    preset = load_experiment(target).model_dump(mode="json")
    try:
        study = experiment_from_dict(dict(experiment), "experiment.json").model_dump(mode="json")
    except ConfigError:
        study = dict(experiment)
    rows = [row for row in differences(preset, study) if not _operational(row[0])]
    return pd.DataFrame(rows, columns=["setting", target, "this study"], dtype=object)


def paper_table(name: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """Paper vs this study for experiment ``name``; None when the paper reports nothing for it.

    #SC / #TC are compared on relative accuracy (the paper's test); they have no seed CI.
    """
    _, entry = paper_entry(name)
    if entry is None:
        return None
    attribute = entry.get("attribute")
    counts = tables.get("classwise_counts", pd.DataFrame())
    counts = counts[counts["quantity"] == "relative"] if not counts.empty else counts
    rows = []
    for source, models in entry.items():
        if not isinstance(models, dict):
            continue
        for key, values in models.items():
            role, temp = _model(str(key))
            for quantity, paper in values.items():
                mean, low, high = _study_value(tables, quantity, role, temp, attribute, counts)
                label = _label(quantity, attribute)
                inside = (low <= paper <= high) if np.isfinite(low) and np.isfinite(high) \
                    else None
                rows.append({"source": source + (" (approximate)" if entry.get("approximate")
                                                 and source != "Table 4" else ""),
                             "quantity": label, "model": model_label(role, temp),
                             "role": role, "T": temp, "paper": float(paper), "this_study": mean,
                             "ci_low": low, "ci_high": high, "difference": mean - float(paper),
                             "paper_in_ci": inside})
    return pd.DataFrame(rows, columns=COLUMNS)
