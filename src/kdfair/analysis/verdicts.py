"""One plain verdict per comparison (DS vs NDS, DS vs teacher), from tests, not from prose.

For every temperature the DS seeds are tested against the reference's seeds on accuracy and on
each headline group measure of every attribute (Welch's t-test, scipy.stats.ttest_ind with
equal_var=False; a one-sample t-test against a single reference run), Benjamini–Hochberg over
the temperatures of each quantity. The verdict counts, per quantity, at how many temperatures
the DS is better or worse and how many of those survive BH, and says so in one sentence a
reviewer can quote; the table behind it is ``comparisons.csv``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from kdfair.analysis import capability, measures
from kdfair.analysis.classwise import COMPARISONS
from kdfair.analysis.records import Finding
from kdfair.store import ROLE_LABELS

COLUMNS = ["comparison", "quantity", "measure", "attribute", "T", "n_ref", "n_ds", "ref_mean",
           "ds_mean", "diff", "test", "p", "p_bh", "significant", "ds_better"]


def _test(ref: np.ndarray, ds: np.ndarray) -> tuple[str, float]:
    """(test name, two-sided p); NaN p where the test is undefined (fewer than 2 DS seeds, or
    no spread at all)."""
    if len(ds) < 2 or len(ref) < 1:
        return "none", math.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly equal seeds: p is still valid
        if len(ref) == 1:
            return "one-sample t", float(stats.ttest_1samp(ds, ref[0]).pvalue)
        return "welch", float(stats.ttest_ind(ds, ref, equal_var=False).pvalue)


def _series(tables: dict[str, pd.DataFrame]) -> list[tuple[str, measures.Measure, str | None,
                                                           pd.DataFrame]]:
    """(quantity key, measure, attribute, run-level frame with role, T, value) of accuracy and
    every headline group measure shown at a glance, per attribute."""
    runs = tables.get("runs", pd.DataFrame())
    acc = measures.get("accuracy")
    out = [(acc.key, acc, None, runs.assign(value=runs[acc.key]))] if not runs.empty else []
    fr = tables.get("fairness_runs", pd.DataFrame())
    if not fr.empty:
        for attr in dict.fromkeys(fr["attribute"]):
            rows = fr[fr["attribute"] == attr]
            out += [(measures.per_attribute_key(m, attr), m, attr, rows.assign(value=rows[m.key]))
                    for m in measures.of("group", headline_only=True) if m.at_a_glance]
    return out


def comparison_table(tables: dict[str, pd.DataFrame], level: float) -> pd.DataFrame:
    """Per comparison, quantity and T: reference and DS seed means, the difference (DS − ref),
    the test's p, BH over T and whether the DS is the better of the two."""
    rows = []
    for key, m, attr, frame in _series(tables):
        ds_all = frame[frame["role"] == "ds"]
        for comparison, (ref_role, _) in COMPARISONS.items():
            ref = frame.loc[frame["role"] == ref_role, "value"].to_numpy(float)
            ref = ref[np.isfinite(ref)]
            if not len(ref):
                continue
            part = []
            for temp, g in ds_all.groupby("T", sort=True):
                ds = g["value"].to_numpy(float)
                ds = ds[np.isfinite(ds)]
                if not len(ds):
                    continue
                test, p = _test(ref, ds)
                diff = float(ds.mean() - ref.mean())
                higher_better = m.family == "accuracy" or m.fairer == "higher"
                better = diff > 0 if higher_better else diff < 0
                part.append({"comparison": comparison, "quantity": key, "measure": m.key,
                             "attribute": attr, "T": float(temp), "n_ref": len(ref),
                             "n_ds": len(ds), "ref_mean": float(ref.mean()),
                             "ds_mean": float(ds.mean()), "diff": diff, "test": test, "p": p,
                             "ds_better": bool(better) if diff != 0 else None})
            ps = np.array([r["p"] for r in part], float)
            ok = np.isfinite(ps)
            bh = np.full(len(ps), np.nan)
            if ok.any():
                bh[ok] = stats.false_discovery_control(ps[ok])
            for r, q in zip(part, bh, strict=True):
                r["p_bh"] = q
                r["significant"] = bool(np.isfinite(q) and q < level)
            rows += part
    return pd.DataFrame(rows, columns=COLUMNS)


def _clause(rows: pd.DataFrame, m: measures.Measure, attr: str | None) -> str:
    """'less accurate at 5 of 5 temperatures (by 0.78–15.50 points; 2 significant)'."""
    n = len(rows)
    worse = rows[rows["ds_better"] == False]  # noqa: E712 - None means no difference
    better = rows[rows["ds_better"] == True]  # noqa: E712
    name = "accurate" if m.family == "accuracy" else \
        f"fair by {m.label}" + (f" '{attr}'" if attr else "")
    unit = " points" if m.unit == "%" else ""

    def part(sub: pd.DataFrame, word: str) -> str:
        d = sub["diff"].abs()
        size = (f"by {d.min():.2f}{unit}" if len(sub) == 1 or d.min() == d.max() else
                f"by {d.min():.2f}–{d.max():.2f}{unit}")
        return (f"{word} {name} at {len(sub)} of {n} temperatures ({size}; "
                f"{int(sub['significant'].sum())} significant)")

    parts = [part(s, w) for s, w in ((worse, "less"), (better, "more")) if len(s)]
    return " and ".join(parts) if parts else f"as {name} at every temperature"


def verdict(comparisons: pd.DataFrame, comparison: str, trends: list[Finding],
            capability_table: pd.DataFrame, level: float) -> Finding | None:
    """The plain verdict of one comparison, with its counts as numbers."""
    c = comparisons[comparisons["comparison"] == comparison] if not comparisons.empty \
        else comparisons
    if c.empty:
        return None
    who = ROLE_LABELS[COMPARISONS[comparison][0]]
    clauses, numbers, noise = [], {}, []
    for key, rows in c.groupby("quantity", sort=False):
        m, attr = measures.get(rows["measure"].iloc[0]), rows["attribute"].iloc[0]
        attr = attr if isinstance(attr, str) else None
        if attr is not None and capability.within_chance(capability_table, key):
            noise.append(f"{m.label} '{attr}'")
        clauses.append(_clause(rows, m, attr))
        numbers[f"{key}:worse"] = int((rows["ds_better"] == False).sum())  # noqa: E712
        numbers[f"{key}:better"] = int((rows["ds_better"] == True).sum())  # noqa: E712
        numbers[f"{key}:significant"] = int(rows["significant"].sum())
    acc = c[c["measure"] == "accuracy"]
    lead = _lead(acc, who)
    falls = any(f.code == "trend" and f.subjects.get("quantity") == "accuracy"
                and f.subjects.get("direction") == "falls" for f in trends)
    if falls and len(acc) and (acc["ds_better"] == False).all():  # noqa: E712
        lead += ", more so as T rises"
    lead += _fairness_lead(c[c["measure"] != "accuracy"], noise)
    tests = [TEST_NAMES.get(t, t) for t in sorted(set(c["test"]) - {"none"})]
    text = (f"Verdict, DS vs {who}: {lead}. In detail, the DS is " + "; ".join(clauses)
            + f" ({' / '.join(tests) or 'no test'} at each temperature; 'significant': "
            f"p < {level:g} after Benjamini–Hochberg over the temperatures of each quantity)."
            + (f" The NDS's own {', '.join(noise)} {'lies' if len(noise) == 1 else 'lie'} "
               "within what chance gives on this test set (What this study can show)."
               if noise else ""))
    return Finding("verdict", text, subjects={"comparison": comparison,
                                              "headline": f"DS vs {who}: {lead}."},
                   numbers=numbers)


TEST_NAMES = {"welch": "Welch's t-test", "one-sample t": "one-sample t-test"}


def _fairness_lead(fair: pd.DataFrame, noise: list[str]) -> str:
    """'; less fair by EOD 'colour' (…)' naming the quantities whose DS is worse (better) at
    every temperature and significantly so at one at least; when one of them is within the
    chance floor on the NDS, that the gap may follow accuracy rather than fairness."""
    if fair.empty:
        return ""
    worse, better = [], []
    for _, rows in fair.groupby("quantity", sort=False):
        m, attr = measures.get(rows["measure"].iloc[0]), rows["attribute"].iloc[0]
        name = f"{m.label} '{attr}'" if isinstance(attr, str) else m.label
        if rows["significant"].any() and (rows["ds_better"] == False).all():  # noqa: E712
            worse.append(name)
        elif rows["significant"].any() and (rows["ds_better"] == True).all():  # noqa: E712
            better.append(name)
    parts = ([f"less fair by {', '.join(worse)} at every temperature"] if worse else []) \
        + ([f"fairer by {', '.join(better)} at every temperature"] if better else [])
    if not parts:
        return "; no group-fairness difference that holds at every temperature"
    floor = [n for n in worse + better if n in noise]
    caveat = (f"; {', '.join(floor)} {'is' if len(floor) == 1 else 'are'} within the chance "
              "floor on the NDS, so these gaps may follow accuracy rather than fairness"
              if floor else "")
    return "; " + " and ".join(parts) + " (significantly at one at least)" + caveat


def _lead(acc: pd.DataFrame, who: str) -> str:
    """The verdict's first clause, on accuracy: the direction of the means at every T, and
    where a test supports it."""
    if acc.empty:
        return "no accuracy to compare"

    def where(rows: pd.DataFrame) -> str:
        ts = ", ".join(f"{t:g}" for t in rows.loc[rows["significant"], "T"])
        return f"significantly at T = {ts}" if ts else "significantly at no temperature"

    if (acc["ds_better"] == False).all():  # noqa: E712
        return f"every DS's mean accuracy is below the {who}'s ({where(acc)})"
    if (acc["ds_better"] == True).all():  # noqa: E712
        return f"every DS's mean accuracy is above the {who}'s ({where(acc)})"
    up = acc[acc["ds_better"] == True]  # noqa: E712
    return (f"the DS's mean accuracy is above the {who}'s at T = "
            + ", ".join(f"{t:g}" for t in up["T"]) + f" ({where(up)}) and not at the others")
