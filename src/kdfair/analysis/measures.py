"""The measures a study reports, in one registry that every table, test, plot and sentence reads.

A :class:`Measure` says what a number is (key, label, unit, digits, which direction is fairer,
whether the findings state it) and, for group fairness, how it is computed per run: a function
of the one-vs-rest group rates giving one value per class (``fairness.GroupRates``). Summary,
trends, method ranking, plots, sections, the paper comparison and the wording loop over
:data:`MEASURES`; no other module names a measure's key. Adding a group-fairness measure is one
entry here (and its per-class function in fairness.py) plus one test against Fairlearn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from kdfair.analysis import fairness
from kdfair.analysis.fairness import GroupRates

Family = Literal["accuracy", "group", "individual", "counterfactual"]


@dataclass(frozen=True)
class Measure:
    """One reported quantity.

    ``table`` / ``prefix``: where its per-model aggregate lives (``<prefix>_mean``, ``_std``,
    ``_ci_low``, ``_ci_high`` in that table); ``fairer``: the direction read as fairer (None:
    not read as fairness); ``headline``: stated in the findings, trend-tested and plotted (the
    others appear in the tables and CSVs); ``per_class``: group measures only.
    """

    key: str
    label: str
    name: str
    family: Family
    unit: str = ""
    digits: int = 2
    fairer: Literal["lower", "higher"] | None = None
    headline: bool = False
    per_class: Callable[[GroupRates], np.ndarray] | None = None
    fairlearn: str | None = None  # the Fairlearn function it equals on a binary task
    table: str = ""
    prefix: str = ""
    summary: bool = True  # in the Summary table (summary.csv)
    at_a_glance: bool = True  # in the displayed Summary and the findings (if headline)
    meaning: str = ""  # what it counts, said after its name in a finding ({attr}: attribute)
    short: str = ""  # its name in the narrow displayed Summary, if shorter than the label
    top: float = math.inf  # the largest value it can take (percent measures: 100)

    @property
    def scale(self) -> float:
        """Stored value = scale × the measure as a fraction (percent measures: 100)."""
        return 100.0 if self.unit == "%" else 1.0

    @property
    def bounds(self) -> tuple[float, float]:
        """The values it can take: an interval of its seed mean is clipped to them (a rate's
        t-interval can reach below 0)."""
        return 0.0, 100.0 if self.unit == "%" else self.top

    @property
    def column(self) -> str:
        """Prefix of its columns in its aggregate table."""
        return self.prefix or self.key

    def heading(self) -> str:
        """Its column heading in tables: 'DPD (%)', 'I(f)'."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def direction_words(self) -> str:
        return f"{self.fairer} is fairer" if self.fairer else "not a fairness measure"


MEASURES: tuple[Measure, ...] = (
    Measure("accuracy", "accuracy", "test accuracy", "accuracy", "%", 2, table="accuracy",
            prefix="acc"),
    Measure("dpd", "DPD", "demographic parity difference", "group", "%", 2, "lower", True,
            fairness.demographic_parity_difference, "demographic_parity_difference",
            table="fairness"),
    Measure("eod", "EOD", "equalized odds difference", "group", "%", 2, "lower", True,
            fairness.equalized_odds_difference, "equalized_odds_difference", table="fairness"),
    Measure("dp_ratio", "DP ratio", "demographic parity ratio", "group", "", 3, "higher",
            per_class=fairness.demographic_parity_ratio, fairlearn="demographic_parity_ratio",
            table="fairness", at_a_glance=False, top=1.0),
    Measure("eo_ratio", "EO ratio", "equalized odds ratio", "group", "", 3, "higher",
            per_class=fairness.equalized_odds_ratio, fairlearn="equalized_odds_ratio",
            table="fairness", at_a_glance=False, top=1.0),
    Measure("eopp", "EOpp", "equal opportunity difference", "group", "%", 2, "lower",
            per_class=fairness.equal_opportunity_difference,
            fairlearn="equal_opportunity_difference", table="fairness", at_a_glance=False),
    Measure("individual", "I(f)", "individual unfairness", "individual", "", 4, "lower", True,
            table="individual"),
    Measure("consistency", "consistency", "k-NN consistency", "individual", "", 4, "higher",
            True, table="individual", summary=False, top=1.0),
    Measure("confidence", "mean confidence", "mean max-probability", "individual", "", 3, None,
            True, table="individual", short="confidence", top=1.0),
    Measure("cf_flip", "counterfactual flip rate", "counterfactual flip rate", "counterfactual",
            "%", 2, "lower", True, table="counterfactual",
            meaning="the share of test inputs whose predicted class changes when only '{attr}' "
                    "changes", short="cf flips"),
    Measure("cf_distance", "I_cf", "counterfactual output distance", "counterfactual", "", 3,
            "lower", True, table="counterfactual", at_a_glance=False),
)


def of(family: Family, headline_only: bool = False) -> tuple[Measure, ...]:
    """The measures of one family, in registry order."""
    return tuple(m for m in MEASURES if m.family == family
                 and (m.headline or not headline_only))


def ranges() -> dict[str, tuple[float, float]]:
    """Column key -> the values the measure can take (``Measure.bounds``)."""
    return {m.key: m.bounds for m in MEASURES}


def get(key: str) -> Measure:
    """The measure of ``key``; KeyError naming the known keys otherwise."""
    for m in MEASURES:
        if m.key == key:
            return m
    raise KeyError(f"no measure {key!r}; known: {', '.join(m.key for m in MEASURES)}")


def per_attribute_key(m: Measure, attribute: str) -> str:
    """The key of a per-attribute measure in the summary and trends: 'dpd:colour'."""
    return f"{m.key}:{attribute}"


def split_key(key: str) -> tuple[Measure | None, str | None]:
    """(measure, attribute) of a summary / trend key ('eod:colour' → EOD, 'colour');
    (None, None) for a key that names no measure (e.g. '#SC:relative')."""
    name, _, attr = key.partition(":")
    try:
        return get(name), attr or None
    except KeyError:
        return None, None


def group_values(rates: GroupRates, binary: bool,
                 measures: tuple[Measure, ...] | None = None) -> dict[str, float]:
    """Each group measure of one run as a fraction (see :func:`fairness.reduce_classes`)."""
    return {m.key: fairness.reduce_classes(m.per_class(rates), binary)
            for m in measures or of("group")}


LONG_COLUMNS = ["role", "T", "measure", "attribute", "unit", "n_runs", "mean", "std", "ci_low",
                "ci_high"]


def long_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every registry measure's per-model aggregate in long form: one typed row per (model,
    measure, attribute) with its mean, std and interval — the same numbers as the wide tables
    (accuracy, fairness, individual, counterfactual), for programs that loop over measures."""
    parts = []
    for m in MEASURES:
        t = tables.get(m.table, pd.DataFrame())
        if t.empty or f"{m.column}_mean" not in t:
            continue
        part = pd.DataFrame({
            "role": t["role"], "T": t["T"], "measure": m.key,
            "attribute": t["attribute"] if "attribute" in t else None, "unit": m.unit,
            "n_runs": t["n_runs"]})
        for stat in ("mean", "std", "ci_low", "ci_high"):
            col = f"{m.column}_{stat}"
            part[stat] = t[col].to_numpy(float) if col in t else np.nan
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=LONG_COLUMNS)
    return pd.concat(parts, ignore_index=True)[LONG_COLUMNS]
