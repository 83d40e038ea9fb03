"""Several studies side by side: each study's own Summary (accuracy, #SC / #TC, DPD / EOD per
attribute, I(f), … with their seed CIs), one column per study, the columns headed by the settings
in which the studies differ (``alpha=0.5``).

Nothing is tested between studies: each cell is the study's own analysis (``report.analyze``),
as its report states it. :func:`comparison_table` and :func:`differing_settings` are pure;
:func:`write_comparison` reads the stores and writes ``report.md``, ``report.html`` and CSVs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kdfair.analysis import measures
from kdfair.analysis.common import ci_text, sort_roles
from kdfair.analysis.document import Document, csv_safe
from kdfair.analysis.text import COMPARISON_WORDS, LABELS
from kdfair.config import AnalysisConfig
from kdfair.errors import ConfigError
from kdfair.integrity import atomic_write
from kdfair.overrides import flatten
from kdfair.store import ResultsDir

COLUMNS = ["study", "label", "model", "role", "T", "measure", "attribute", "n_runs", "mean",
           "ci_low", "ci_high"]
COUNT_COLUMNS = ["study", "label", "model", "T", "count", "n_significant", "n_higher",
                 "n_lower", "n_constant_different"]
UNSET = "unset"


@dataclass
class Comparison:
    """What ``kdfair compare`` wrote, and the numbers as tables."""

    md_path: Path
    html_path: Path
    csv_paths: list[Path]
    studies: pd.DataFrame  # one row per study: label, name, path, the settings that differ
    table: pd.DataFrame  # long: one row per (study, model, measure, attribute): mean and CI
    counts: pd.DataFrame  # #SC / #TC per (study, DS T)


def differing_settings(experiments: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dotted paths whose values differ between the experiments (their name aside), in the
    order of the first experiment that has them."""
    flat = [flatten(e) for e in experiments]
    paths = list(dict.fromkeys(p for f in flat for p in f))
    return [p for p in paths if p != "name"
            and len({json.dumps(f.get(p, UNSET), sort_keys=True, default=str)
                     for f in flat}) > 1]


def value_text(value: Any) -> str:
    """A setting's value as a column head shows it: ``0.5``, ``true``, ``[1, 4]``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """Each path by its last key (``alpha``), or whole where two paths share that key
    (``teacher.train.lr``, ``student.train.lr``)."""
    leaves = [p.rsplit(".", 1)[-1] for p in paths]
    return {p: leaf if leaves.count(leaf) == 1 else p
            for p, leaf in zip(paths, leaves, strict=True)}


def study_labels(experiments: Sequence[Mapping[str, Any]],
                 names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(a column head per study, the differing setting paths): ``alpha=0.5, t2_scaling=false``
    from the settings that differ; the study's name where none do or heads would repeat; heads
    that still repeat (one name and settings twice) numbered, ``demo #1``, ``demo #2``."""
    paths = differing_settings(experiments)
    short = short_names(paths)
    flat = [flatten(e) for e in experiments]
    labels = [", ".join(f"{short[p]}={value_text(f.get(p, UNSET))}" for p in paths) or n
              for f, n in zip(flat, names, strict=True)]
    if len(set(labels)) < len(labels):
        labels = [f"{n} ({lab})" if lab != n else n for lab, n in zip(labels, names, strict=True)]
    twice = {lab for lab in labels if labels.count(lab) > 1}
    if twice:  # the same name and settings twice: numbered, so that no column stands for
        nth: dict[str, int] = {}  # another study's numbers
        for i, lab in enumerate(labels):
            if lab in twice:
                nth[lab] = nth.get(lab, 0) + 1
                labels[i] = f"{lab} #{nth[lab]}"
    return labels, paths


def _measure_columns(summary: pd.DataFrame) -> list[tuple[measures.Measure, str | None, str]]:
    """(measure, attribute, column prefix) of every registry measure the Summary holds (those
    shown at a glance), in registry order, attributes in the study's order."""
    found = []
    bases = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    for m in measures.MEASURES:
        if not (m.summary and m.at_a_glance):
            continue
        for base in bases:
            if m.key == "accuracy" and base == m.column:
                found.append((m, None, base))
            elif m.key != "accuracy":
                got, attr = measures.split_key(base)
                if got is not None and got.key == m.key:
                    found.append((m, attr, base))
    return found


def comparison_table(summaries: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Long form of several numeric Summaries (``report.analyze(…)["summary"]``), keyed by
    study label: one row per (study, model, measure, attribute) with n_runs, mean and CI."""
    rows = []
    for label, summary in summaries.items():
        for m, attr, base in _measure_columns(summary):
            for _, r in summary.iterrows():
                rows.append({"label": label, "model": r["model"], "role": r["role"], "T": r["T"],
                             "measure": m.key, "attribute": attr, "n_runs": r["n_runs"],
                             **{s: r.get(f"{base}_{s}", math.nan)
                                for s in ("mean", "ci_low", "ci_high")}})
    return pd.DataFrame(rows, columns=COLUMNS[1:])


def count_table(summaries: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """#SC and #TC of every DS model of every study (significant, DS higher, DS lower,
    different in every seed); NaN where a study had no tests."""
    rows = []
    for label, summary in summaries.items():
        ds = summary[summary["role"] == "ds"]
        for count in LABELS.values():
            for _, r in ds.iterrows():
                rows.append({"label": label, "model": r["model"], "T": r["T"], "count": count,
                             "n_significant": r.get(count, math.nan),
                             "n_higher": r.get(f"{count}_higher", math.nan),
                             "n_lower": r.get(f"{count}_lower", math.nan),
                             "n_constant_different": r.get(f"{count}_constant_different",
                                                           math.nan)})
    return pd.DataFrame(rows, columns=COUNT_COLUMNS[1:])


def _models(table: pd.DataFrame) -> list[str]:
    """The models of a table, teacher, NDS, then DS by T."""
    models = table[["role", "T", "model"]].drop_duplicates("model")
    return list(sort_roles(models)["model"]) if len(models) else []


def side_by_side(table: pd.DataFrame, labels: Sequence[str], measure: str,
                 attribute: str | None) -> pd.DataFrame:
    """One measure as display strings: a row per model, a column per study (mean [CI])."""
    m = measures.get(measure)
    part = table[(table["measure"] == measure)
                 & (table["attribute"].isna() if attribute is None
                    else table["attribute"] == attribute)]
    unit = f" {m.unit}" if m.unit == "%" else ""
    out = {"model": _models(part)}
    for label in labels:
        cells = part[part["label"] == label].set_index("model")
        out[label] = [ci_text(*(cells.loc[mod, s] for s in ("mean", "ci_low", "ci_high")),
                              digits=m.digits, unit=unit) if mod in cells.index else "–"
                      for mod in out["model"]]
    return pd.DataFrame(out)


def _count_cell(r: pd.Series) -> str:
    if not math.isfinite(r["n_significant"]):
        return "not tested"
    s = f"{int(r['n_significant'])} (↑{int(r['n_higher'])}/↓{int(r['n_lower'])})"
    const = r["n_constant_different"]
    return s + (f"; {int(const)} in every seed" if math.isfinite(const) and const else "")


def counts_side_by_side(counts: pd.DataFrame, labels: Sequence[str], count: str) -> pd.DataFrame:
    """#SC or #TC as display strings: a row per DS T, a column per study."""
    part = counts[counts["count"] == count].copy()
    part["role"] = "ds"
    models = _models(part)
    out: dict[str, list[str]] = {"model": models}
    for label in labels:
        cells = part[part["label"] == label].set_index("model")
        out[label] = [_count_cell(cells.loc[mod]) if mod in cells.index else "–"
                      for mod in models]
    return pd.DataFrame(out)


def _document(studies: pd.DataFrame, table: pd.DataFrame, counts: pd.DataFrame,
              settings: list[str], csv_names: list[str],
              changed: Mapping[str, Any]) -> Document:
    labels = list(studies["label"])
    doc = Document(f"Comparison of {len(labels)} studies")
    doc.h("Studies")
    doc.p("Each column is one study, headed by the settings in which the studies differ"
          + (f" ({', '.join(settings)})" if settings else " (none: headed by name)")
          + ". Every cell is that study's own analysis — mean over seeds and its 95 % seed "
          "interval, as its report states it; nothing here is a test between studies.")
    if changed:
        doc.p("Analysis options changed for every study here (as `kdfair report --set` would): "
              + ", ".join(f"{k}={value_text(v)}" for k, v in changed.items())
              + "; each study's other options are its own.")
    doc.table(studies)
    for m in measures.MEASURES:
        attrs = table.loc[table["measure"] == m.key, "attribute"]
        for attr in dict.fromkeys(attrs):
            a = None if pd.isna(attr) else str(attr)
            doc.h(m.heading() + (f" — {a}" if a else ""))
            doc.table(side_by_side(table, labels, m.key, a),
                      f"{m.name}; {m.direction_words()}; mean [95 % seed CI]")
        if m.key == "accuracy":
            for comparison, count in LABELS.items():
                if (counts["count"] == count).any():
                    doc.h(f"{count}: classes that changed vs "
                          f"{COMPARISON_WORDS[comparison]}")
                    doc.table(counts_side_by_side(counts, labels, count),
                              "classes significant (DS higher / DS lower) per T")
    doc.h("Files")
    doc.links(csv_names)
    return doc


def _write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    safe = csv_safe(df)  # names and settings come from users: no cell runs as a formula
    atomic_write(path, lambda tmp: safe.to_csv(tmp, index=False))


def write_comparison(studies: Sequence[str | Path], out: str | Path,
                     options: AnalysisConfig | Callable[[Path], AnalysisConfig] | None = None,
                     changed: Mapping[str, Any] | None = None) -> Comparison:
    """Analyse each study and write ``out/report.md``, ``out/report.html``, ``comparison.csv``
    (long: study, model, measure, attribute, mean, CI), ``counts.csv`` (#SC / #TC) and
    ``studies.csv``. ``options``: one analysis for all, or each study's from its path; default:
    each study's own. ``changed``: the analysis options changed for every study (stated)."""
    from kdfair.analysis.report import analyze

    roots = [Path(s) for s in studies]
    if len(roots) < 2:
        raise ConfigError(f"compare needs at least two studies, got {len(roots)}: give their "
                          "results directories (or an --out root holding several)")
    experiments = [ResultsDir(r).experiment() for r in roots]
    names = [str(e.get("name") or r.name) for e, r in zip(experiments, roots, strict=True)]
    labels, settings = study_labels(experiments, names)
    summaries = {label: analyze(r, options(r) if callable(options) else options)["summary"]
                 for label, r in zip(labels, roots, strict=True)}
    flat = [flatten(e) for e in experiments]
    studies_df = pd.DataFrame({"label": labels, "study": names, "path": [str(r) for r in roots],
                               **{p: [value_text(f.get(p, UNSET)) for f in flat]
                                  for p in settings}})
    by_label = dict(zip(labels, names, strict=True))
    table = comparison_table(summaries)
    table.insert(0, "study", table["label"].map(by_label))
    counts = count_table(summaries)
    counts.insert(0, "study", counts["label"].map(by_label))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csvs = {"comparison.csv": table, "counts.csv": counts, "studies.csv": studies_df}
    for name, df in csvs.items():
        _write_csv(out / name, df)
    doc = _document(studies_df, table, counts, settings, list(csvs), changed or {})
    _write_text(out / "report.md", doc.markdown())
    _write_text(out / "report.html", doc.html())
    return Comparison(md_path=out / "report.md", html_path=out / "report.html",
                      csv_paths=[out / n for n in csvs], studies=studies_df, table=table,
                      counts=counts)
