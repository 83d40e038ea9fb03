"""What the analysis found, as data: a code, a severity, whom it is about and its numbers.

Decisions downstream (a method's students collapsed, a study at the ceiling) read the code and
the fields, never the sentence; the sentence is rendered once, where the record is made, from
those same fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

Severity = Literal["warning", "finding"]
FIELDS = ["code", "severity", "subjects", "numbers"]  # then the sentence's column


@dataclass(frozen=True)
class Finding:
    """One warning or finding; ``text`` is its sentence."""

    code: str
    text: str
    severity: Severity = "finding"
    subjects: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)


def warnings_table(found: list[Finding]) -> pd.DataFrame:
    """warnings.csv: one row per warning, its subjects and numbers as JSON, its sentence last."""
    return _table(found, "warning")


def findings_table(found: list[Finding]) -> pd.DataFrame:
    """findings.csv: one row per finding, in the report's order."""
    return _table(found, "finding")


def _table(found: list[Finding], text: str) -> pd.DataFrame:
    return pd.DataFrame([{"code": f.code, "severity": f.severity,
                          "subjects": json.dumps(f.subjects, sort_keys=True),
                          "numbers": json.dumps(f.numbers, sort_keys=True), text: f.text}
                         for f in found], columns=[*FIELDS, text], dtype=object)


def has(table: pd.DataFrame, code: str, **subjects: str) -> bool:
    """Whether a warnings table holds a record of ``code`` whose subjects include ``subjects``."""
    if table.empty or "code" not in table:
        return False
    for c, s in zip(table["code"], table["subjects"], strict=True):
        if c == code:
            have = json.loads(s) if isinstance(s, str) else {}
            if all(have.get(k) == v for k, v in subjects.items()):
                return True
    return False
