"""The words of the report: the summary table, the key results and the findings.

Wording rules (each sentence claims no more than its test measured):

- a class *improved* / *worsened* only by the test on its own (raw) accuracy β_c;
- the relative test (β_c/β, the paper's #SC/#TC) is worded as a shift of the class's *share* of
  accuracy, never as the class getting better or worse;
- findings lead with the (class, T) cells on which both tests agree;
- a trend in T is stated only where its Spearman permutation test supports it, and every trend
  sentence cites that test;
- no model is said to be fairer by I(f) when I(f) follows confidence across runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kdfair.analysis import capability, measures
from kdfair.analysis.classwise import COMPARISONS
from kdfair.analysis.common import Analysis, ci_text, model_label, rows_of
from kdfair.analysis.measures import Measure
from kdfair.analysis.records import Finding
from kdfair.analysis.trends import trend_words
from kdfair.analysis.verdicts import verdict
from kdfair.store import ROLE_LABELS

QUANTITY_WORDS = {"relative": "relative accuracy β_c/β", "raw": "raw class accuracy β_c"}
COMPARISON_WORDS = {"nds_vs_ds": "the non-distilled student", "teacher_vs_ds": "the teacher"}
REFERENCE = {comp: ROLE_LABELS[ref] for comp, (ref, _) in COMPARISONS.items()}  # NDS, teacher
LABELS = {comp: label for comp, (_, label) in COMPARISONS.items()}  # #SC, #TC
DIRECTION_WORDS = {  # quantity -> (DS higher, DS lower)
    "raw": ("improved", "worsened"),
    "relative": ("share of accuracy up", "share of accuracy down"),
}
TEST_WORDS = {
    "welch": "Welch's t-test (scipy.stats.ttest_ind, equal_var=False)",
    "paired t": "paired t-test on seed-matched differences (scipy.stats.ttest_rel)",
    "one-sample": "one-sample t-test against the single teacher (scipy.stats.ttest_1samp)",
    "permutation": "exact permutation test of the difference in means "
                   "(scipy.stats.permutation_test)",
    "paired permutation": "paired permutation test (sign flips of seed-matched differences, "
                          "scipy.stats.permutation_test)",
    "one-sample permutation": "sign-flip permutation test against the single teacher",
}
TEST_SHORT = {  # the names sentences use; the full ones (TEST_WORDS) are in Configuration
    "welch": "Welch", "paired t": "paired t", "one-sample": "one-sample t",
    "permutation": "permutation", "paired permutation": "paired permutation",
    "one-sample permutation": "one-sample permutation",
}
MAX_NAMED = 8  # classes named in one sentence


FEW_SEEDS = 5  # below this many runs per model an interval's coverage is approximate


def ci_words(a: Analysis, detail: bool = False) -> str:
    """How the report's intervals were made, with n: '95 % t-interval of the seed mean, 3
    seeds per model (with fewer than 5, its coverage rests on normally spread seeds)'."""
    o = a.options
    acc = a.table("accuracy")
    n = acc["n_runs"] if "n_runs" in acc else pd.Series(dtype=float)
    lo, hi = (int(n.min()), int(n.max())) if len(n) else (0, 0)
    seeds = f"{lo if lo == hi else f'{lo}–{hi}'} seed{'s' if hi != 1 else ''} per model"
    if o.seed_resamples == 0:
        return "no intervals (analysis.seed_resamples: 0)"
    if o.seed_ci == "t":
        s = f"95 % t-interval of the seed mean, {seeds}"
        few = "its coverage rests on normally spread seeds"
    else:
        s = f"95 % percentile bootstrap over seeds, {seeds}"
        few = "it is narrower than 95 % (at 3 seeds about the min–max)"
        if detail:
            s += (f"; each model resampled on its own, {o.seed_resamples} resamples, RNG seed "
                  f"{o.random_seed}")
    if detail:
        s += " (analysis.seed_ci: " + o.seed_ci + ")"
    return s + (f"; with fewer than {FEW_SEEDS} seeds {few}" if 0 < lo < FEW_SEEDS else "")


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 class', '3 classes'; 'remains' / 'remain' style agreement via ``many``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _counts(a: Analysis, quantity: str | None = None) -> pd.DataFrame:
    c = a.table("classwise_counts")
    return c[c["quantity"] == (quantity or a.options.test_on)] if not c.empty else c


def _level(a: Analysis) -> str:
    return f"p < {a.options.significance:g}"


def tests_used(a: Analysis, comparison: str | None = None, short: bool = False) -> str:
    """The tests that made the class-wise numbers (of one comparison), in words: in full
    (with the scipy function, said once, in Configuration and the class-wise section) or by
    their short name (in sentences)."""
    c = a.table("classwise_counts")
    if c.empty:
        return "no test"
    if comparison:
        c = c[c["comparison"] == comparison]
    names = [n for n in dict.fromkeys(c["test"]) if n != "none"]
    words = TEST_SHORT if short else TEST_WORDS
    return "; ".join(words.get(n, n) for n in names) or "no test"


# --- the summary -----------------------------------------------------------------------------


def summary_table(a: Analysis) -> pd.DataFrame:
    """One numeric row per model: accuracy (mean, std, 95 % seed CI, in %), #SC / #TC on the
    headline quantity (significant, DS higher, DS lower, different in every seed), DPD / EOD of
    every attribute in data.json's order, I(f), mean confidence and the counterfactual measures
    (flip rate, I_cf) per attribute where the data have counterfactuals."""
    acc = a.table("accuracy")
    counts = _counts(a)
    rows = []
    for _, r in acc.iterrows():
        row = {"model": model_label(r["role"], r["T"]), "role": r["role"], "T": r["T"],
               "n_runs": int(r["n_runs"])}
        for s in ("mean", "std", "ci_low", "ci_high"):
            row[f"acc_{s}"] = r.get(f"acc_{s}", math.nan)
        for comparison, label in LABELS.items():
            c = counts[(counts["comparison"] == comparison) & (counts["T"] == r["T"])
                       & (counts["test"] != "none")] if r["role"] == "ds" else counts.iloc[:0]
            for key, col in (("", "n_significant"), ("_higher", "n_higher"),
                             ("_lower", "n_lower"), ("_constant_different",
                                                     "n_constant_different")):
                row[f"{label}{key}"] = float(c[col].iloc[0]) if len(c) else math.nan
        row.update(_measure_cells(a, r["role"], r["T"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _measure_cells(a: Analysis, role: str, temperature: float) -> dict[str, float]:
    """One model's Summary cells of every registry measure shown there but accuracy: mean and
    CI, keyed '<key>:<attribute>_<stat>' for per-attribute measures, '<key>_<stat>' otherwise;
    group measures for every attribute of the data, the others where the study has them."""
    cells: dict[str, float] = {}
    for family in ("group", "individual", "counterfactual"):
        chosen = [m for m in measures.of(family) if m.summary]
        t = a.table(chosen[0].table) if chosen else pd.DataFrame()
        if family == "group":
            attrs: list[str | None] = list(a.store.attributes)
        elif t.empty:
            continue
        else:
            attrs = list(dict.fromkeys(t["attribute"])) if "attribute" in t else [None]
        for attr in attrs:
            rows = t if t.empty else rows_of(t if attr is None else t[t["attribute"] == attr],
                                             role, temperature)
            for m in chosen:
                key = m.key if attr is None else measures.per_attribute_key(m, attr)
                for st in ("mean", "ci_low", "ci_high"):
                    col = f"{m.column}_{st}"
                    cells[f"{key}_{st}"] = float(rows[col].iloc[0]) \
                        if len(rows) and col in rows else math.nan
    return cells


def _count_text(row: pd.Series, label: str, quantity: str) -> str:
    if not np.isfinite(row.get(label, math.nan)):
        return "" if row["role"] != "ds" else "not tested"
    up, down = ("+", "−") if quantity == "raw" else ("↑", "↓")
    s = f"{int(row[label])} ({up}{int(row[label + '_higher'])}/{down}{int(row[label + '_lower'])})"
    const = row.get(label + "_constant_different", 0)
    return s + (f"; {int(const)} in every seed" if np.isfinite(const) and const else "")


def summary_display(a: Analysis) -> pd.DataFrame:
    """The Summary as the report shows it: mean [95 % CI] strings, counts with directions."""
    t = a.table("summary")
    rows = []
    for _, r in t.iterrows():
        row = {"model": r["model"], "runs": int(r["n_runs"]),
               "accuracy (%)": ci_text(r["acc_mean"], r["acc_ci_low"], r["acc_ci_high"])}
        for label in LABELS.values():
            row[label] = _count_text(r, label, a.options.test_on)
        for key, heading, m in _display_columns(a, t):
            row[heading] = ci_text(r[f"{key}_mean"], r[f"{key}_ci_low"], r[f"{key}_ci_high"],
                                   m.digits)
        rows.append(row)
    return pd.DataFrame(rows)


def _display_columns(a: Analysis, summary: pd.DataFrame) -> list[tuple[str, str, Measure]]:
    """(summary key, column heading, measure) of the headline measures the displayed Summary
    shows: per attribute 'DPD colour (%)', else 'I(f)'."""
    out = []
    for family in ("group", "individual", "counterfactual"):
        for m in measures.of(family, headline_only=True):
            if not (m.summary and m.at_a_glance):
                continue
            name = m.short or m.label
            unit = f" ({m.unit})" if m.unit else ""
            if family == "individual":
                keys = [(m.key, name + unit)] if f"{m.key}_mean" in summary else []
            else:
                t = a.table(m.table)
                attrs = a.store.attributes if family == "group" else \
                    dict.fromkeys(t["attribute"]) if not t.empty else {}
                keys = [(measures.per_attribute_key(m, attr), f"{name} {attr}{unit}")
                        for attr in attrs]
            out += [(k, h, m) for k, h in keys]
    return out


# --- class-wise sentences ---------------------------------------------------------------------


def _cells(a: Analysis, comparison: str, quantity: str) -> pd.DataFrame:
    d = a.table("classwise")
    if d.empty:
        return d
    return d[(d["comparison"] == comparison) & (d["quantity"] == quantity)]


def _names(rows: pd.DataFrame, limit: int = MAX_NAMED) -> str:
    items = [f"{n} (T = {t:g})" for n, t in zip(rows["class_name"], rows["T"], strict=True)]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def agreement(a: Analysis, comparison: str) -> pd.DataFrame:
    """(class, T) cells where the raw and the relative test are both significant, same sign."""
    raw, rel = _cells(a, comparison, "raw"), _cells(a, comparison, "relative")
    if raw.empty or rel.empty:
        return raw.iloc[:0] if not raw.empty else raw
    key = ["T", "class"]
    m = raw.merge(rel, on=key, suffixes=("_raw", "_rel"))
    both = m[m["significant_raw"] & m["significant_rel"]
             & (np.sign(m["diff_raw"]) == np.sign(m["diff_rel"]))]
    return both.rename(columns={"class_name_raw": "class_name", "diff_raw": "diff"})


def _agreement_sentence(a: Analysis, comparison: str) -> str | None:
    raw, rel = _cells(a, comparison, "raw"), _cells(a, comparison, "relative")
    if raw.empty:
        return None
    both = agreement(a, comparison)
    who = REFERENCE[comparison]
    n_raw, n_rel = int(raw["significant"].sum()), int(rel["significant"].sum())
    head = (f"DS vs {who} ({LABELS[comparison]}): the raw and the relative test "
            f"({tests_used(a, comparison, short=True)}, {_level(a)}) ")
    if both.empty:
        return head + (f"agree on no (class, T) cell (raw flags {n_raw}, relative {n_rel}); "
                       "no class is called improved or worsened by both.")
    up, down = both[both["diff"] > 0], both[both["diff"] < 0]
    parts = []
    if len(up):
        parts.append(f"improved with a larger share of accuracy: {_names(up)}")
    if len(down):
        parts.append(f"worsened with a smaller share of accuracy: {_names(down)}")
    return head + (f"agree on {plural(len(both), '(class, T) cell')} of {n_raw} raw / {n_rel} "
                   "relative: " + "; ".join(parts) + ".")


def _raw_sentence(a: Analysis, comparison: str) -> str | None:
    raw = _cells(a, comparison, "raw")
    if raw.empty:
        return None
    sig = raw[raw["significant"]]
    who = COMPARISON_WORDS[comparison]
    test = f"{tests_used(a, comparison, short=True)} on raw class accuracy, {_level(a)}"
    if sig.empty:
        return f"No class's own accuracy differs significantly from {who} at any T ({test})."
    up, down = sig[sig["diff"] > 0], sig[sig["diff"] < 0]
    s = f"Raw accuracy vs {who} ({test}): "
    s += f"improved {plural(len(up), '(class, T) cell')}" + (f" ({_names(up)})" if len(up)
                                                               else "")
    s += f", worsened {len(down)}" + (f" ({_names(down)})" if len(down) else "")
    return s + "; " + family_words(a, raw) + "."


def distinct_tests(cells: pd.DataFrame) -> pd.DataFrame:
    """The tested cells with repeats of one test dropped: at the ceiling every class at 100 % in
    every run has the same β_c/β in every run (1/β), so the relative test repeats one p-value
    across those classes — one test, not one per class. Repeats are cells of the same T with
    the same statistic, p and difference."""
    tested = cells[np.isfinite(cells["p"].to_numpy(float))] if "p" in cells else cells.iloc[:0]
    return tested.drop_duplicates(["T", "t", "p", "diff"]) if len(tested) else tested


def pooled_bh(cells: pd.DataFrame, level: float) -> tuple[int, int]:
    """(distinct tests significant after Benjamini–Hochberg over every distinct tested
    (class, T) cell of the table, number of distinct tests): the family a count pooled over T
    is read against (:func:`distinct_tests`)."""
    p = distinct_tests(cells)["p"].to_numpy(float) if len(cells) else np.array([])
    if not len(p):
        return 0, 0
    return int((stats.false_discovery_control(p) < level).sum()), len(p)


def family_words(a: Analysis, cells: pd.DataFrame) -> str:
    """'after Benjamini–Hochberg over all 130 tested (class, T) cells 12 remain; about 6.5 are
    expected at p < 0.05 by chance alone' (repeats of one test counted once, and said)."""
    level = a.options.significance
    kept, n = pooled_bh(cells, level)
    if not n:
        return "no cell was testable"
    tested = int(np.isfinite(cells["p"].to_numpy(float)).sum())
    more = tested - n
    repeats = (f" ({plural(more, 'more cell')} {'repeats' if more == 1 else 'repeat'} another "
               f"class's test exactly and {'counts' if more == 1 else 'count'} once)"
               if more else "")
    return (f"after Benjamini–Hochberg over all {n} distinct tested (class, T) cells{repeats} "
            f"{kept} {'remains' if kept == 1 else 'remain'}; about {level * n:.1f} "
            f"{'is' if level * n == 1 else 'are'} expected at p < {level:g} by chance alone")


def _relative_sentence(a: Analysis, comparison: str) -> str | None:
    rel = _cells(a, comparison, "relative")
    if rel.empty:
        return None
    sig = rel[rel["significant"]]
    test = f"{tests_used(a, comparison, short=True)} on β_c/β, {_level(a)}"
    if sig.empty:
        return (f"{LABELS[comparison]} (the paper's count, {test}) is 0 at every T: no class's "
                "share of accuracy shifts significantly.")
    up, down = int((sig["diff"] > 0).sum()), int((sig["diff"] < 0).sum())
    per_t = sig.groupby("T").size()
    return (f"{LABELS[comparison]} (the paper's count, {test}): {len(sig)} (class, T) cells "
            f"shift the class's share of accuracy ({up} up, {down} down; most at T = "
            f"{per_t.idxmax():g}: {int(per_t.max())}; {family_words(a, rel)}). A shift in "
            "share is not an improvement: when one class drops, every other class's share "
            "rises.")


def _constant_sentence(a: Analysis) -> str | None:
    d = a.table("classwise")
    if d.empty or not d["constant_different"].any():
        return None
    c = d[d["constant_different"] & (d["quantity"] == "raw")]
    if c.empty:
        c = d[d["constant_different"]].drop_duplicates(["comparison", "T", "class"])
    permutation = a.options.test == "permutation"
    items = [f"{r['class_name']} vs {REFERENCE[r['comparison']]} at T = {r['T']:g} "
             f"({r['mean_ref']:.1f} % vs {r['mean_ds']:.1f} %)" for _, r in c.iterrows()]
    more = len(items) - MAX_NAMED
    floor = smallest_permutation_p(a, c)
    if floor >= a.options.significance:
        how = (f"with these seed counts no test can: even an exact permutation test's smallest "
               f"two-sided p is {floor:.2g}, not below {a.options.significance:g}; more seeds "
               "would be needed")
    elif permutation:
        how = "the permutation test includes them"
    else:
        how = "set analysis.test: permutation to test them"
    return (f"{plural(len(items), '(class, T) cell')} are different in every seed (untestable "
            "by Welch: constant within each group): " + ", ".join(items[:MAX_NAMED])
            + (f" and {more} more" if more > 0 else "") + f"; {how}.")


def smallest_permutation_p(a: Analysis, cells: pd.DataFrame) -> float:
    """The smallest two-sided p an exact permutation test can give for ``cells``' comparisons
    (teacher or NDS vs the DS of one T): 2 / C(n_ref + n_ds, n_ds) for two groups, 2 / 2^n for
    sign flips (a single teacher, or seed-paired differences); the best over the comparisons,
    0 when it cannot be known."""
    runs = a.table("runs")
    best = 1.0
    for _, r in cells.drop_duplicates(["comparison", "T"]).iterrows():
        ref = COMPARISONS[r["comparison"]][0]
        n_ref = int((runs["role"] == ref).sum())
        n_ds = int(((runs["role"] == "ds") & (runs["T"] == r["T"])).sum())
        if n_ref < 1 or n_ds < 1:
            return 0.0
        if n_ref == 1 or a.options.pairing == "paired":  # sign flips of n values
            best = min(best, 2.0 / 2 ** min(n_ds, n_ref if n_ref > 1 else n_ds))
        else:
            best = min(best, 2.0 / math.comb(n_ref + n_ds, n_ds))
    return min(best, 1.0)


def no_test_reasons(a: Analysis) -> list[str]:
    c = a.table("classwise_counts")
    if c.empty:
        return []
    out = []
    for comparison, rows in c[c["test"] == "none"].groupby("comparison", sort=False):
        label = rows["count"].iloc[0]
        reasons = sorted(set(rows["reason"]))
        ts = sorted(set(rows["T"]))
        where = "any temperature" if len(ts) == len(set(c["T"])) else \
            "T = " + ", ".join(f"{t:g}" for t in ts)
        out.append(f"No tests for {label} (DS vs {COMPARISON_WORDS[comparison]}) at {where}: "
                   + "; ".join(reasons) + ".")
    return out


def given_teacher(a: Analysis) -> str | None:
    c = a.table("classwise_counts")
    if c.empty or not c["test"].astype(str).str.startswith("one-sample").any():
        return None
    runs = a.table("runs")
    given = bool(runs.loc[runs["role"] == "teacher", "given"].any())
    what = "a single given (pretrained) model" if given else "a single run"
    return (f"The teacher is {what}, a fixed reference: teacher-vs-DS tests (#TC) are one-sample "
            "tests (scipy.stats.ttest_1samp) of the DS seeds against the teacher's value.")


# --- trends, metrics ---------------------------------------------------------------------------


def trend_findings(a: Analysis) -> list[Finding]:
    """Supported trends, one finding each; the rest in one; each sentence cites its test."""
    tr = a.table("trends")
    if tr.empty:
        return []
    keep = tr[~tr["quantity"].str.startswith(("#SC:", "#TC:"))
              | tr["quantity"].str.endswith(a.options.test_on)]
    sig = keep[keep["significant"]]
    ceiling = capability.at_ceiling(a.table("capability"))
    small = sig["span"] < sig["resolution"]
    if ceiling:  # only what moves by a visible amount: at least a point, in percent
        small |= (sig["unit"] != "%") | (sig["span"] < capability.CEILING_POINTS)
    shown = sig[~small]
    cap = a.table("capability")
    noise = ("; the NDS's value lies within what chance gives on this test set, and that floor "
             "rises as accuracy falls, so this trend may follow accuracy, not fairness")
    out, follow = [], []
    for _, rows in shown.groupby("quantity", sort=False):
        r = rows.iloc[-1]  # all T when both ranges are shown
        if _follows_accuracy(r, a.options.significance):
            follow.append(r)
            continue
        text = f"{r['label']} {trend_words(r, a.options.significance)}"
        if len(rows) == 2 and rows["direction"].nunique() == 1:
            o = rows.iloc[0]
            text += (f"; the same over {o['range']} (ρ = {o['rho']:.2f}, permutation p = "
                     f"{o['p']:.3g})")
        elif len(rows) == 2:
            text += "; " + trend_words(rows.iloc[0], a.options.significance)
        if capability.within_chance(cap, r["quantity"]):
            partial = r.get("partial_p", math.nan)
            text += (noise if not np.isfinite(partial) else
                     f"; controlling for accuracy it persists (partial Spearman ρ = "
                     f"{r['partial_rho']:.2f}, p = {partial:.3g}), but the NDS's value lies "
                     "within what chance gives on this test set: the gaps are noise-sized")
        out.append(Finding(
            "trend", text + ".",
            subjects={"quantity": r["quantity"], "range": ", ".join(rows["range"]),
                      "direction": r["direction"]},
            numbers={k: float(r.get(k, math.nan)) for k in (
                "rho", "p", "p_bh", "span", "resolution", "partial_rho", "partial_p")}))
    if follow:
        out.append(Finding(
            "follows_accuracy",
            "These move with T only as accuracy does — controlling for each run's accuracy "
            f"(partial Spearman, {_level(a)}) no trend in T remains, so they are one effect, "
            "not separate findings: "
            + "; ".join(f"{r['label']} {r['direction']} (ρ = {r['rho']:.2f}, {r['range']}; "
                        f"partial ρ = {r['partial_rho']:.2f}, p = {r['partial_p']:.3g})"
                        for r in follow) + ".",
            subjects={"quantities": ", ".join(r["quantity"] for r in follow)},
            numbers={"trends": len(follow)}))
    left = len(sig) - len(shown)
    if left:
        why = ("each moves less over T than the seeds resolve (its span of per-T means is "
               "below the difference a Welch test finds with 80 % power)")
        if ceiling:
            why += (f", or, the study being at the ceiling, by less than "
                    f"{capability.CEILING_POINTS:g} point")
        out.append(Finding(
            "trends_below_resolution",
            f"{plural(left, 'significant trend')} in T {'is' if left == 1 else 'are'} not read "
            f"as findings: {why}; trends.csv lists them with their span and resolution.",
            numbers={"trends": left}))
    tested = int(tr["p"].notna().sum())
    if out and tested:
        passed = int((tr["p_bh"] < a.options.significance).sum())
        out.append(Finding(
            "trend_family",
            f"Of the {tested} trend tests, about {a.options.significance * tested:.1f} are "
            f"expected at p < {a.options.significance:g} by chance alone; {passed} pass after "
            "Benjamini–Hochberg.",
            numbers={"tests": tested, "expected": a.options.significance * tested,
                     "after_bh": passed}))
    rest = keep[~keep["significant"] & keep["p"].notna()]
    untestable = rest["min_p"] >= a.options.significance
    if untestable.any():
        u = rest[untestable]
        out.append(Finding(
            "untestable_trend",
            "Untestable with so few temperatures (one value per T; the smallest p an exact "
            f"permutation test can give is not below {a.options.significance:g}): "
            + "; ".join(f"{r['label']}, {r['range']} ({int(r['n_points'])} points, smallest "
                        f"p {r['min_p']:.2g})" for _, r in u.iterrows()) + ".",
            subjects={"quantities": ", ".join(dict.fromkeys(u["quantity"]))}))
    rest = rest[~untestable]
    if len(rest):
        out.append(Finding(
            "no_trend",
            f"No monotone trend in T at {_level(a)} (Spearman, permutation p) for: "
            + "; ".join(f"{r['label']}, {r['range']} (ρ = {r['rho']:.2f}, p = {r['p']:.3g})"
                        for _, r in rest.iterrows()) + ".",
            subjects={"quantities": ", ".join(dict.fromkeys(rest["quantity"]))}))
    return out


def _follows_accuracy(row: pd.Series, level: float) -> bool:
    """Whether a trend's partial Spearman controlling for accuracy (trends.partial_spearman)
    was computed and is not significant: it moves with T only as accuracy does."""
    p = row.get("partial_p", math.nan)
    return bool(np.isfinite(p) and p >= level)


def _value(table: pd.DataFrame, role: str, col: str, temp: float = math.nan) -> pd.Series | None:
    r = rows_of(table, role, temp)
    return None if r.empty or not np.isfinite(r[f"{col}_mean"].iloc[0]) else r.iloc[0]


def _ci(r: pd.Series | None, col: str, digits: int, unit: str) -> str:
    if r is None:
        return "–"
    return ci_text(r[f"{col}_mean"], r.get(f"{col}_ci_low"), r.get(f"{col}_ci_high"), digits,
                   unit)


def metric_finding(table: pd.DataFrame, col: str, name: str, unit: str, digits: int,
                   accuracy: pd.DataFrame, rank: bool = True,
                   why: str = "it follows confidence here") -> str | None:
    """'<name> (mean [95 % seed CI], lower is fairer): NDS x, teacher y; DS lowest at T = t
    (z, at a % accuracy); DS's CI lies below the teacher's at k of m T.' With ``rank`` False
    (the measure is not read as fairness) only the values, no 'fairer', 'lowest' or ranking."""
    ds = table[(table["role"] == "ds") & table[f"{col}_mean"].notna()]
    if ds.empty:
        return None
    refs = [f"{model_label(role, 0)} {_ci(_value(table, role, col), col, digits, unit)}"
            for role in ("nds", "teacher") if _value(table, role, col) is not None]
    if not rank:
        lo, hi = ds.loc[ds[f"{col}_mean"].idxmin()], ds.loc[ds[f"{col}_mean"].idxmax()]
        return (f"{name} (seed mean [95 % CI]; {why}, so it is not read as fairness): "
                + ", ".join(refs) + ("; " if refs else "")
                + f"DS from {lo[f'{col}_mean']:.{digits}f}{unit} (T = {lo['T']:g}) to "
                f"{hi[f'{col}_mean']:.{digits}f}{unit} (T = {hi['T']:g}).")
    best = ds.loc[ds[f"{col}_mean"].idxmin()]
    acc = _value(accuracy, "ds", "acc", best["T"])
    s = (f"{name} (seed mean [95 % CI], lower is fairer): " + ", ".join(refs)
         + ("; " if refs else "") + f"DS lowest at T = {best['T']:g} "
         f"({_ci(best, col, digits, unit)}" + (f", at {acc['acc_mean']:.1f} % accuracy)"
                                               if acc is not None else ")"))
    teacher = _value(table, "teacher", col)
    if teacher is not None and np.isfinite(teacher.get(f"{col}_ci_low", math.nan)):
        below = int((ds[f"{col}_ci_high"] < teacher[f"{col}_ci_low"]).sum())
        above = int((ds[f"{col}_ci_low"] > teacher[f"{col}_ci_high"]).sum())
        rest = len(ds) - below - above
        s += (f"; DS's CI lies entirely below the teacher's at {below} and above it at {above} "
              f"of {len(ds)} temperatures" + (f" (at the other {rest}, overlapping CIs: no "
                                              "difference shown)" if rest else ""))
    return s + "."


def confidence_sentence(a: Analysis) -> str | None:
    c = a.table("individual_vs_confidence")
    if c.empty or not np.isfinite(c["pearson_r"].iloc[0]):
        return None
    r = c.iloc[0]
    s = (f"I(f) vs mean confidence (mean max-probability) across {int(r['n_runs'])} runs: "
         f"Pearson r = {r['pearson_r']:.3f}, Spearman ρ = {r['spearman_rho']:.3f}")
    if r["tracks_confidence"]:
        return s + (". I(f) here follows how confident (how peaked) the outputs are, so its "
                    "differences between models are not read as fairness and models are not "
                    "ranked by it.")
    return s + "."


# --- findings and key results ----------------------------------------------------------------


def accuracy_sentence(a: Analysis) -> str:
    acc = a.table("accuracy")
    ds = acc[acc["role"] == "ds"]
    refs = [f"{model_label(role, 0)} {_ci(_value(acc, role, 'acc'), 'acc', 2, ' %')}"
            for role in ("nds", "teacher") if _value(acc, role, "acc") is not None]
    if ds.empty:
        return ("Accuracy (seed mean [95 % CI]): " + ", ".join(refs) + "; there are no "
                "distilled-student (DS) runs to compare, so no class-wise tests or disagreement.")
    best = ds.loc[ds["acc_mean"].idxmax()]
    s = (f"Accuracy (seed mean [95 % CI]): the most accurate DS (T = {best['T']:g}) reaches "
         f"{_ci(best, 'acc', 2, ' %')}")
    nds = _value(acc, "nds", "acc")
    if nds is not None:
        s += f", {best['acc_mean'] - nds['acc_mean']:+.2f} points vs the NDS"
        if np.isfinite(best.get("acc_ci_low", math.nan)) and \
                np.isfinite(nds.get("acc_ci_low", math.nan)):
            apart = best["acc_ci_low"] > nds["acc_ci_high"] or \
                best["acc_ci_high"] < nds["acc_ci_low"]
            s += " (the CIs do not overlap)" if apart else " (the CIs overlap: no difference shown)"
        res = capability.resolution_of(a.table("capability"))
        if np.isfinite(res) and abs(best["acc_mean"] - nds["acc_mean"]) < res:
            s += f", smaller than the {res:.2f} points the seeds resolve with 80 % power"
    return s + ("; " + ", ".join(refs) if refs else "") + "."


def consistency_misleads(a: Analysis) -> str:
    """A sentence when the similarity space groups test inputs by a sensitive attribute more
    than by their label (then rising consistency means predictions follow the attribute);
    '' otherwise."""
    n = a.table("neighbours")
    if n.empty or not n["groups_more_than_label"].any():
        return ""
    label = float(n.loc[n["by"] == "label", "share"].iloc[0])
    worse = n[n["groups_more_than_label"]]
    return ("In this similarity space a test input's neighbours share its label "
            f"{100 * label:.1f} % of the time but its "
            + ", its ".join(f"'{b}' {100 * s:.1f} %" for b, s in zip(
                worse["by"], worse["share"], strict=True))
            + ": agreement between neighbours rewards following the attribute, so neither "
            "higher consistency nor lower I(f) is read as fairer here.")


def _is_tracking(a: Analysis) -> bool:
    c = a.table("individual_vs_confidence")
    return bool(not c.empty and c["tracks_confidence"].iloc[0])


def metric_findings(a: Analysis) -> list[Finding]:
    """One finding per headline fairness measure (per attribute where it has one): the
    teacher's and NDS's values, the fairest DS and how the DS CIs sit beside the teacher's."""
    out = []
    acc = a.table("accuracy")
    for family in ("group", "counterfactual"):
        t = a.table(measures.of(family)[0].table)
        attrs = (a.store.attributes if family == "group" else
                 dict.fromkeys(t["attribute"]) if not t.empty else ())
        for attr in attrs:
            rows = t[t["attribute"] == attr] if not t.empty else t
            for m in measures.of(family, headline_only=True):
                s = metric_finding(rows, m.column, _measure_name(m, attr), _unit(m), m.digits,
                                   acc) if not rows.empty and m.fairer == "lower" \
                    and m.at_a_glance else None
                if s:
                    out.append(Finding("measure", s,
                                       subjects={"measure": m.key, "attribute": attr}))
    ind = a.table("individual")
    if not ind.empty:
        m = measures.get("individual")
        s = metric_finding(ind, m.column, "Individual unfairness I(f)", _unit(m), m.digits, acc,
                           rank=not (_is_tracking(a) or consistency_misleads(a)),
                           why="it follows confidence here" if _is_tracking(a) else
                           "its neighbours share a sensitive attribute more than a label")
        if s:
            out.append(Finding("measure", s, subjects={"measure": m.key}))
        c = confidence_sentence(a)
        if c:
            out.append(Finding("follows_confidence" if _is_tracking(a) else
                               "confidence_correlation", c, subjects={"measure": m.key}))
    return out


def _unit(m: Measure) -> str:
    return f" {m.unit}" if m.unit else ""


def _measure_name(m: Measure, attr: str) -> str:
    """'EOD for 'colour'', and what the measure counts where the registry says."""
    name = f"{m.label[0].upper()}{m.label[1:]} for '{attr}'"
    return name + (", " + m.meaning.format(attr=attr) if m.meaning else "")


def _settings(n: int) -> str:
    return f"{n} setting{'s' if n != 1 else ''}"


def protocol_sentence(name: Any, changes: pd.DataFrame) -> str:
    """Whether the study is the preset of the paper's study its numbers belong to (the table
    ``protocol_changes`` makes: columns setting, the preset's name, this study)."""
    preset = changes.columns[1]
    who = "This study" if name == preset else f"This study (`{name}`)"
    if changes.empty:
        return (f"{who} runs the preset `{preset}` as kdfair ships it (where and how it runs "
                "aside).")
    return (f"**{who} differs from the preset `{preset}` in {_settings(len(changes))}** "
            "(below): the paper's values describe the paper's protocol, so a difference here "
            "may come from these changes rather than from kdfair or chance.")


def paper_sentence(a: Analysis) -> str | None:
    p = a.table("paper_vs_study")
    if p.empty:
        return None
    have = p[p["this_study"].notna()]
    with_ci = have[have["paper_in_ci"].notna()]
    inside = int(with_ci["paper_in_ci"].astype(bool).sum())
    changes = a.table("paper_protocol_changes")
    changed = (f", from a study that differs from the preset `{changes.columns[1]}` in "
               f"{_settings(len(changes))}" if not changes.empty else "")
    return (f"Paper vs this study: {len(have)} of the paper's {len(p)} reported values have a "
            f"counterpart here; {inside} of the {len(with_ci)} with a seed CI lie inside this "
            f"study's 95 % CI{changed} (see 'Paper vs this study').")


def findings(a: Analysis) -> list[Finding]:
    """The main results as records, for the terminal, the report and findings.csv; both tests'
    agreement first, each sentence with its number and test (warnings are their own table)."""
    out: list[Finding] = []

    def add(code: str, text: str | None, **subjects: str) -> None:
        if text:
            out.append(Finding(code, text, subjects=subjects))

    for comparison in LABELS:
        add("agreement", _agreement_sentence(a, comparison), comparison=comparison)
    add("accuracy", accuracy_sentence(a))
    for comparison in LABELS:
        add("raw_cells", _raw_sentence(a, comparison), comparison=comparison)
        add("relative_cells", _relative_sentence(a, comparison), comparison=comparison)
    add("constant_cells", _constant_sentence(a))
    for s in no_test_reasons(a):
        add("no_test", s)
    add("given_teacher", given_teacher(a))
    trends = trend_findings(a)
    out += trends
    out += metric_findings(a)
    comparisons = a.table("comparisons")
    verdicts = [v for v in (verdict(comparisons, c, trends, a.table("capability"),
                                    a.options.significance) for c in LABELS) if v]
    out[:0] = verdicts
    add("paper", paper_sentence(a))
    skipped, failed = a.table("skipped"), a.table("failed")
    if len(skipped):
        add("skipped_runs", f"{len(skipped)} run director"
            f"{'y was' if len(skipped) == 1 else 'ies were'} skipped as incomplete or corrupt: "
            + ", ".join(skipped["run"]) + ".", runs=", ".join(skipped["run"]))
    if len(failed):
        ids = ", ".join(failed["run_id"].astype(str))
        add("failed_runs", f"{plural(len(failed), 'run')} failed in training and "
            f"{'is' if len(failed) == 1 else 'are'} missing: {ids}.", runs=ids)
    return out


TREND_CODES = ("trend", "follows_accuracy", "trends_below_resolution", "trend_family",
               "untestable_trend", "no_trend")
MEASURE_CODES = ("measure", "follows_confidence", "confidence_correlation")


def finding_groups(found: list[Finding]) -> list[tuple[str, list[str]]]:
    """Main findings as (headline, evidence) pairs: each verdict over the findings of its
    comparison, the trends under one line, the per-measure findings under one line, and the
    rest as lines of their own (no evidence)."""
    by_comparison = {f.subjects["comparison"]: f for f in found if f.code == "verdict"}
    used = set(map(id, by_comparison.values()))
    groups = []
    for comparison, v in by_comparison.items():
        ev = [f for f in found if id(f) not in used and (
            f.subjects.get("comparison") == comparison
            or (f.code == "accuracy" and comparison == "nds_vs_ds"))]
        used |= set(map(id, ev))
        groups.append((v.text, [f.text for f in ev]))
    trends = [f for f in found if f.code in TREND_CODES]
    if trends:
        stated = [f for f in trends if f.code == "trend"]
        follow = next((f for f in trends if f.code == "follows_accuracy"), None)
        own = "its" if len(stated) == 1 else "their"
        head = (f"Trends in T: {plural(len(stated), 'trend')} on {own} own"
                + (f", {int(follow.numbers['trends'])} more that only follow accuracy"
                   if follow else "") + " (Spearman with a permutation p; the evidence below).")
        groups.append((head, [f.text for f in trends]))
        used |= set(map(id, trends))
    per_measure = [f for f in found if f.code in MEASURE_CODES]
    if per_measure:
        groups.append(("Fairness measure by measure: teacher, NDS and the fairest DS, with "
                       "seed CIs.", [f.text for f in per_measure]))
        used |= set(map(id, per_measure))
    rest = [(f.text, []) for f in found if id(f) not in used]
    return groups + rest


def key_results(a: Analysis) -> list[str]:
    """At most five sentences, each with its number and test, for the top of the report: the
    verdicts first; the accuracy, measure and paper sentences are the findings' own."""
    first = {}
    for f in a.findings:
        first.setdefault(f.code, f)
    out = [f.subjects["headline"] for f in a.findings if f.code == "verdict"]
    out += [first["accuracy"].text] if "accuracy" in first else []
    for comparison in LABELS:
        both = agreement(a, comparison)
        raw = _cells(a, comparison, "raw")
        if raw.empty:
            continue
        test = tests_used(a, comparison, short=True)
        out.append(f"DS vs {REFERENCE[comparison]}: {plural(len(both), '(class, T) cell')} "
                   f"significant on both raw and relative accuracy ({test}, {_level(a)}); raw "
                   "accuracy alone: "
                   f"{int((raw['significant'] & (raw['diff'] > 0)).sum())} improved, "
                   f"{int((raw['significant'] & (raw['diff'] < 0)).sum())} worsened ("
                   + family_words(a, raw) + ").")
    tr = a.table("trends")
    if not tr.empty:
        sc = tr[tr["quantity"] == f"#SC:{a.options.test_on}"]
        if len(sc):
            r = sc.iloc[-1]
            out.append(f"#SC {trend_words(r, a.options.significance)}.")
    out += [f.text for f in a.findings if f.code in MEASURE_CODES][:1]
    out += [first["paper"].text] if "paper" in first else []
    return out[:5]
