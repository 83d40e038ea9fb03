"""The words of the report: summary table, plain-language findings and the document itself."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from kdfair.analysis import plots
from kdfair.analysis.common import Analysis, config_of, fmt_t, model_label, pm, rows_of
from kdfair.analysis.document import Document

QUANTITY_WORDS = {"relative": "relative accuracy β_c/β", "raw": "raw class accuracy β_c"}
COMPARISON_WORDS = {"nds_vs_ds": "the non-distilled student", "teacher_vs_ds": "the teacher"}
REFERENCE = {"nds_vs_ds": "NDS", "teacher_vs_ds": "teacher"}


def _counts(a: Analysis, quantity: str | None = None) -> pd.DataFrame:
    c = a.table("classwise_counts")
    return c[c["quantity"] == (quantity or a.options.test_on)] if not c.empty else c


def _count_cell(counts: pd.DataFrame, comparison: str, temp: float) -> str:
    row = counts[(counts["comparison"] == comparison) & (counts["T"] == temp)]
    if row.empty:
        return "–"
    r = row.iloc[0]
    if r["test"] == "none":
        return "not tested"
    return f"{int(r['n_significant'])} (+{int(r['n_better'])}/−{int(r['n_worse'])})"


def summary_table(a: Analysis) -> pd.DataFrame:
    """role, T, runs, accuracy mean ± std, #SC, #TC (+better/−worse), headline fairness."""
    acc = a.table("accuracy")
    counts = _counts(a)
    ind = a.table("individual")
    fair = a.table("fairness")
    attr = next(iter(a.store.attributes), None)
    rows = []
    for _, r in acc.iterrows():
        row = {"model": model_label(r["role"], r["T"]), "T": fmt_t(r["T"]),
               "runs": int(r["n_runs"]), "accuracy (%)": pm(r["acc_mean"], r["acc_std"])}
        for comparison, label in (("nds_vs_ds", "#SC"), ("teacher_vs_ds", "#TC")):
            row[label] = _count_cell(counts, comparison, r["T"]) if r["role"] == "ds" else ""
        if attr is not None and not fair.empty:
            f = rows_of(fair[fair["attribute"] == attr], r["role"], r["T"])
            if not f.empty:
                row[f"DPD {attr} (%)"] = pm(f["dpd_mean"].iloc[0], f["dpd_std"].iloc[0])
                row[f"EOD {attr} (%)"] = pm(f["eod_mean"].iloc[0], f["eod_std"].iloc[0])
        if not ind.empty:
            i = rows_of(ind, r["role"], r["T"])
            if not i.empty:
                row["I(f)"] = pm(i["individual_mean"].iloc[0], i["individual_std"].iloc[0], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def _seed_words(a: Analysis) -> str:
    acc = a.table("accuracy")
    parts = []
    for role in ("teacher", "nds", "ds"):
        n = acc.loc[acc["role"] == role, "n_runs"]
        if n.empty:
            parts.append(f"no {model_label(role, 0).split()[0]} runs")
        elif role == "ds":
            lo, hi = int(n.min()), int(n.max())
            parts.append(f"DS {lo if lo == hi else f'{lo}–{hi}'} per temperature")
        else:
            parts.append(f"{model_label(role, 0)} {int(n.iloc[0])}")
    return ", ".join(parts)


def _test_words(a: Analysis) -> str:
    o = a.options
    if not o.tests:
        return "no tests (analysis.tests is false)"
    return (f"Welch's t-test per class (scipy.stats.ttest_ind, equal_var=False), two-sided, "
            f"p < {o.significance:g}, no multiple-comparison correction for #SC/#TC (as the "
            f"paper; Benjamini–Hochberg counts beside them); headline quantity: "
            f"{QUANTITY_WORDS[o.test_on]}")


def _raw_vs_relative(a: Analysis) -> list[str]:
    """Per comparison, how many (class, T) cells each quantity flags, and where they disagree."""
    d = a.table("classwise")
    out = []
    for comparison, label in (("nds_vs_ds", "#SC"), ("teacher_vs_ds", "#TC")):
        c = d[d["comparison"] == comparison]
        if c.empty:
            continue
        key = ["T", "class"]
        rel = c[c["quantity"] == "relative"].set_index(key)["significant"]
        raw = c[c["quantity"] == "raw"].set_index(key)["significant"]
        both = int((rel & raw).sum())
        out.append(f"{label}: relative accuracy flags {int(rel.sum())} (class, T) cells, raw "
                   f"accuracy {int(raw.sum())}; {both} are flagged by both, "
                   f"{int((rel & ~raw).sum())} only by the relative test, "
                   f"{int((raw & ~rel).sum())} only by the raw test.")
    return out


def _given_teacher(a: Analysis) -> str | None:
    c = a.table("classwise_counts")
    if c.empty or not (c["test"] == "one-sample").any():
        return None
    runs = a.table("runs")
    given = bool(runs.loc[runs["role"] == "teacher", "given"].any())
    what = "a single given (pretrained) model" if given else "a single run"
    return (f"The teacher is {what}, a fixed reference: teacher-vs-DS tests (#TC) are one-sample "
            "t-tests (scipy.stats.ttest_1samp) of the DS seeds against the teacher's value.")


def _no_test_reasons(a: Analysis) -> list[str]:
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
        out.append(f"No t-tests for {label} (DS vs {COMPARISON_WORDS[comparison]}) at {where}: "
                   + "; ".join(reasons) + ".")
    return out


def _trend(counts: pd.DataFrame, comparison: str) -> tuple[float, int, float, int] | None:
    rows = counts[(counts["comparison"] == comparison) & (counts["test"] != "none")]
    if len(rows) < 2:
        return None
    rows = rows.sort_values("T")
    return (rows["T"].iloc[0], int(rows["n_significant"].iloc[0]), rows["T"].iloc[-1],
            int(rows["n_significant"].iloc[-1]))


def _classwise_sentence(r: pd.Series, alpha: float) -> str:
    who = COMPARISON_WORDS[r["comparison"]]
    chance = alpha * r["n_testable"]
    return (f"at T = {r['T']:g}, {int(r['n_significant'])} of {int(r['n_classes'])} classes "
            f"differ significantly from {who}; {int(r['n_better'])} improved, "
            f"{int(r['n_worse'])} worsened; {int(r['n_significant_bh'])} remain after "
            f"Benjamini–Hochberg (about {chance:.1f} are expected by chance alone)")


def _best_ds(table: pd.DataFrame, col: str, lowest: bool) -> pd.Series | None:
    ds = table[(table["role"] == "ds") & table[col].notna()]
    if ds.empty:
        return None
    return ds.loc[ds[col].idxmin() if lowest else ds[col].idxmax()]


def _ref_value(table: pd.DataFrame, role: str, col: str) -> float:
    v = table.loc[table["role"] == role, col]
    return float(v.iloc[0]) if len(v) else math.nan


def _metric_finding(table: pd.DataFrame, col: str, name: str, unit: str, digits: int,
                    accuracy: pd.DataFrame, lowest_is_better: bool = True) -> str | None:
    """'<name>: NDS x, teacher y; DS lowest at T = t (z, at a % accuracy); n of m beat the
    teacher.' Accuracy is stated because a degenerate model (e.g. constant) can look fair."""
    best = _best_ds(table, f"{col}_mean", lowest=lowest_is_better)
    if best is None:
        return None
    ds_acc = accuracy.loc[(accuracy["role"] == "ds") & (accuracy["T"] == best["T"]), "acc_mean"]
    parts = []
    for role in ("nds", "teacher"):
        v = _ref_value(table, role, f"{col}_mean")
        if np.isfinite(v):
            parts.append(f"{model_label(role, 0)} {v:.{digits}f}{unit}")
    word = "lowest" if lowest_is_better else "highest"
    s = f"{name}: " + ", ".join(parts) + ("; " if parts else "") + \
        f"DS {word} at T = {best['T']:g} ({best[f'{col}_mean']:.{digits}f}{unit}" + \
        (f", at {ds_acc.iloc[0]:.1f} % accuracy)" if len(ds_acc) else ")")
    teacher = _ref_value(table, "teacher", f"{col}_mean")
    if np.isfinite(teacher):
        ds = table.loc[table["role"] == "ds", f"{col}_mean"]
        better = (ds < teacher) if lowest_is_better else (ds > teacher)
        s += f"; {int(better.sum())} of {len(ds)} temperatures beat the teacher"
    return s + "."


def findings(a: Analysis) -> list[str]:
    """Plain-language sentences on the main results, for the terminal and the report."""
    out: list[str] = []
    acc = a.table("accuracy")
    best = _best_ds(acc, "acc_mean", lowest=False)
    nds = _ref_value(acc, "nds", "acc_mean")
    teacher = _ref_value(acc, "teacher", "acc_mean")
    if best is not None:
        s = f"Accuracy: the best DS (T = {best['T']:g}) reaches {best['acc_mean']:.2f} %"
        refs = [f"{name} {v:.2f} % ({best['acc_mean'] - v:+.2f} points)"
                for name, v in (("NDS", nds), ("teacher", teacher)) if np.isfinite(v)]
        out.append(s + ("; " + ", ".join(refs) if refs else "") + ".")
    else:
        refs = [f"{name} {v:.2f} %" for name, v in (("teacher", teacher), ("NDS", nds))
                if np.isfinite(v)]
        out.append("Accuracy: " + ", ".join(refs) + "; there are no distilled-student (DS) runs "
                   "to compare, so no class-wise tests or disagreement.")
    counts = _counts(a)
    alpha = a.options.significance
    tested = counts[counts["test"] != "none"] if not counts.empty else counts
    for comparison in ("nds_vs_ds", "teacher_vs_ds"):
        rows = tested[tested["comparison"] == comparison] if not tested.empty else tested
        if rows.empty:
            continue
        top = rows.loc[rows["n_significant"].idxmax()]
        test = f"t-test on {QUANTITY_WORDS[top['quantity']]}, p < {alpha:g}"
        if top["n_significant"] == 0:
            out.append(f"{top['count']}: no class differs significantly from "
                       f"{COMPARISON_WORDS[comparison]} at any temperature ({test}).")
        else:
            out.append(f"{top['count']}: {_classwise_sentence(top, alpha)} ({test}).")
    trend = []
    for comparison, label in (("nds_vs_ds", "#SC"), ("teacher_vs_ds", "#TC")):
        tr = _trend(counts, comparison) if not counts.empty else None
        if tr:
            t0, n0, t1, n1 = tr
            trend.append(f"{label} stays at {n0}" if n0 == n1 else
                         f"{label} goes from {n0} to {n1}")
    if trend:
        out.append(f"From T = {t0:g} to T = {t1:g}, " + " and ".join(trend) + ".")
    raw, rel = _counts(a, "raw"), _counts(a, "relative")
    if not raw.empty and (raw["test"] != "none").any():
        r = raw[(raw["comparison"] == "nds_vs_ds") & (raw["test"] != "none")]
        q = rel[(rel["comparison"] == "nds_vs_ds") & (rel["test"] != "none")]
        if not r.empty and not q.empty:
            out.append("On raw class accuracy the NDS-vs-DS test finds "
                       f"{int(r['n_significant'].sum())} significant (class, T) cells, "
                       "on relative accuracy "
                       f"{int(q['n_significant'].sum())} (see 'Relative vs raw accuracy').")
    out += _no_test_reasons(a)
    given = _given_teacher(a)
    if given:
        out.append(given)
    fair = a.table("fairness")
    for attr in a.store.attributes:
        rows = fair[fair["attribute"] == attr] if not fair.empty else fair
        for col, name in (("eod", "EOD"), ("dpd", "DPD")):
            s = _metric_finding(rows, col, f"{name} for '{attr}'", " %", 2, acc) \
                if not rows.empty else None
            if s:
                out.append(s)
    ind = a.table("individual")
    if not ind.empty:
        s = _metric_finding(ind, "individual", "Individual unfairness I(f)", "", 4, acc)
        if s:
            out.append(s)
    skipped, failed = a.table("skipped"), a.table("failed")
    if len(skipped):
        out.append(f"{len(skipped)} run director{'y was' if len(skipped) == 1 else 'ies were'} "
                   "skipped as incomplete or corrupt: " + ", ".join(skipped["run"]) + ".")
    if len(failed):
        out.append(f"{len(failed)} run(s) failed in training and are missing: "
                   + ", ".join(failed["run_id"].astype(str)) + ".")
    return out


# --- the document ----------------------------------------------------------------------------


def _display(df: pd.DataFrame, digits: dict[str, int] | None = None) -> pd.DataFrame:
    """Round floats for display; T as text."""
    df = df.copy()
    if "T" in df:
        df["T"] = [fmt_t(t) for t in df["T"]]
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col]):
            d = (digits or {}).get(col, 2)
            df[col] = [("–" if not np.isfinite(v) else f"{v:.{d}f}") for v in df[col]]
    return df


def _counts_display(a: Analysis) -> pd.DataFrame:
    c = a.table("classwise_counts")
    rows = []
    for temp in sorted(set(c["T"])):
        row: dict = {"T": f"{temp:g}"}
        for q, short in (("relative", "rel"), ("raw", "raw")):
            for comparison, label in (("nds_vs_ds", "#SC"), ("teacher_vs_ds", "#TC")):
                r = c[(c["T"] == temp) & (c["quantity"] == q) & (c["comparison"] == comparison)]
                if r.empty:
                    continue
                r = r.iloc[0]
                row[f"{label} {short}"] = "not tested" if r["test"] == "none" else (
                    f"{int(r['n_significant'])} (+{int(r['n_better'])}/−{int(r['n_worse'])}; "
                    f"BH {int(r['n_significant_bh'])})")
        rows.append(row)
    return pd.DataFrame(rows)


def _heatmap_data(a: Analysis):
    """(change [rows, T] in points, significant mask, row names, temps, title) or None."""
    ca = a.table("class_accuracy")
    nds = ca[ca["role"] == "nds"]
    ds = ca[ca["role"] == "ds"]
    if nds.empty or ds.empty:
        return None
    temps = sorted(set(ds["T"]))
    c = a.store.num_classes
    base = nds.sort_values("class")["acc_mean"].to_numpy()
    change = np.stack([ds[ds["T"] == t].sort_values("class")["acc_mean"].to_numpy() - base
                       for t in temps], axis=1)
    sig = np.zeros_like(change, dtype=bool)
    d = a.table("classwise")
    if not d.empty:
        d = d[(d["comparison"] == "nds_vs_ds") & (d["quantity"] == a.options.test_on)]
        for j, t in enumerate(temps):
            rows = d[d["T"] == t]
            sig[rows["class"].to_numpy()[rows["significant"].to_numpy(bool)], j] = True
    test = f"t-test on {QUANTITY_WORDS[a.options.test_on]}, p < {a.options.significance:g}"
    rows = np.arange(c)
    title = f"Class accuracy change vs NDS; dots: significant ({test})"
    if c > plots.MAX_ROWS:
        n_sig = sig.sum(1)
        mag = np.nan_to_num(np.abs(change)).max(1)
        if n_sig.any():
            rows = np.flatnonzero(n_sig)
            rows = rows[np.lexsort((-mag[rows], -n_sig[rows]))][:plots.MAX_ROWS]
            title = (f"Classes significant at some T ({len(rows)} of {int((n_sig > 0).sum())} "
                     f"shown, of {c}): accuracy change vs NDS; dots: {test}")
        else:
            rows = np.argsort(-mag)[:30]
            title = f"No class significant ({test}); the 30 largest changes vs NDS of {c} classes"
    names = [a.store.class_names[i] for i in rows]
    return change[rows], sig[rows], names, temps, title


def _plot(a: Analysis, doc: Document, path: Path, caption: str, fn, *args, **kw) -> None:
    """Draw one figure into the document; a failing figure becomes a note, never an error."""
    try:
        fn(path, *args, **kw)
        doc.image(path, caption)
    except Exception as err:  # noqa: BLE001 - a figure must never cost the report
        a.notes.append(f"plot {path.name} failed: {type(err).__name__}: {err}")


def build_document(a: Analysis, out: Path, csv_paths: list[Path]) -> Document:
    s, o = a.store, a.options
    cfg = config_of(s)
    doc = Document(f"kdfair report — {cfg['name']}")
    temps = sorted(set(a.table("runs").query("role == 'ds'")["T"]))
    acc = a.table("accuracy")
    lo, hi = int(acc["n_runs"].min()), int(acc["n_runs"].max())
    n_seeds = f"{lo}" if lo == hi else f"{lo}–{hi}"

    doc.h("Main findings")
    doc.ul(a.findings or ["Nothing to report: no usable runs."])

    doc.h("Configuration")
    g = a.graph
    doc.ul([
        f"Experiment '{cfg['name']}' on data set {cfg['dataset'] or 'unknown'}: {s.n_test} test "
        f"inputs, {s.num_classes} classes.",
        f"Teacher {cfg['teacher'] or '?'} → student {cfg['student'] or '?'}; Hinton KD with "
        f"α = {cfg['alpha'] if cfg['alpha'] is not None else '?'}, T² scaling "
        f"{cfg['t2_scaling'] if cfg['t2_scaling'] is not None else '?'}, teacher policy "
        f"{cfg['teacher_policy'] or '?'}.",
        "Temperatures: " + (", ".join(f"{t:g}" for t in temps) or "none") + ".",
        f"Runs found: {_seed_words(a)}.",
        f"Test: {_test_words(a)}.",
        "Individual fairness: " + (
            f"I(f) = mean over each test input x and each of its k = {g.k} nearest neighbours "
            f"x' of D(f(x), f(x'))/d(x, x'), D = "
            f"{ {'tv': 'total variation ½‖p − q‖₁', 'l1': '‖p − q‖₁', 'l2': '‖p − q‖₂'}[a.norm] } "
            f"of the predicted probabilities, d = Euclidean distance in the similarity space "
            f"({g.description}); consistency uses the same neighbours."
            if g is not None else "not computed (see notes)."),
        f"Analysis options from {a.options_source}: {o.model_dump()}.",
    ])

    doc.h("Summary")
    doc.table(a.table("summary"),
              "#SC / #TC: significant classes vs NDS / teacher (+improved/−worsened), "
              f"{QUANTITY_WORDS[o.test_on]}, p < {o.significance:g}; mean ± std over seeds.")

    doc.h("Accuracy")
    _plot(a, doc, out / "accuracy_vs_T.png",
          "Test accuracy vs T; teacher and NDS as reference bands (mean ± std).",
          plots.accuracy_vs_t, acc, n_seeds)

    doc.h("Class-wise bias")
    doc.p("For each temperature, each class is tested for a difference between the DS(T) seeds "
          "and the NDS seeds (#SC) and between the DS(T) seeds and the teacher seeds (#TC). "
          f"Cells: significant classes (+improved/−worsened; BH: after Benjamini–Hochberg). At "
          f"p < {o.significance:g} about {o.significance:g} × {s.num_classes} = "
          f"{o.significance * s.num_classes:.1f} classes per comparison are expected to come out "
          "'significant' by chance alone even if nothing changed; the BH count controls that.")
    given = _given_teacher(a)
    if given:
        doc.p(given)
    doc.ul(_no_test_reasons(a))
    counts = a.table("classwise_counts")
    if not counts.empty and (counts["test"] != "none").any():
        doc.table(_counts_display(a))
        doc.ul([_classwise_sentence(r, o.significance)[0].upper()
                + _classwise_sentence(r, o.significance)[1:] + "."
                for _, r in _counts(a).query("test != 'none'").sort_values(
                    ["comparison", "T"]).iterrows()])
        _plot(a, doc, out / "classwise_counts_vs_T.png",
              "#SC and #TC vs T, on relative (paper) and raw accuracy; dashed: after BH.",
              plots.counts_vs_t, counts, s.num_classes, o.significance)
        doc.h("Relative vs raw accuracy", 3)
        doc.p("The paper tests relative accuracy β_c/β. Relative accuracy couples the classes: "
              "when one class drops, overall accuracy β drops too and every other class's β_c/β "
              "rises, so a single real change can show up as several 'significant' classes, and "
              "a uniform gain in all classes shows up as none. The raw test asks directly whether "
              "a class's own accuracy β_c changed. Where the relative count exceeds the raw one, "
              "part of it is this coupling; where the raw count is larger, the student changed "
              "many classes in the same direction.")
        doc.ul(_raw_vs_relative(a))
    heat = _heatmap_data(a)
    if heat is not None:
        change, sig, names, ts, title = heat
        _plot(a, doc, out / "classwise_heatmap.png",
              "Mean DS(T) − NDS class accuracy in points (red: worse, blue: better).",
              plots.class_change_heatmap, change, sig, names, ts, title)

    doc.h("Group fairness")
    fair = a.table("fairness")
    if not s.attributes:
        doc.p("Skipped: the data set has no sensitive attributes (or none could be read).")
    else:
        doc.p("DPD and EOD as Fairlearn defines them (between groups, worst case), in percent, "
              "lower is fairer; "
              + ("binary task: Fairlearn's demographic_parity_difference and "
                 "equalized_odds_difference." if s.num_classes == 2 else
                 "multi-class: one-vs-rest per class, averaged over classes.")
              + (f" CI: 95% bootstrap over the test set ({o.bootstrap} resamples)."
                 if o.bootstrap else ""))
        for attr in s.attributes:
            rows = fair[fair["attribute"] == attr].copy()
            rows.insert(0, "model", [model_label(r, t) for r, t in zip(rows["role"], rows["T"],
                                                                         strict=True)])
            doc.h(f"Attribute '{attr}' (groups: {', '.join(s.attribute_groups[attr])})", 3)
            shown = rows.drop(columns=["role", "attribute"]).rename(columns=_FAIR_COLUMNS)
            doc.table(_display(shown))
            _plot(a, doc, out / f"fairness_{_safe(attr)}_vs_T.png",
                  f"DPD and EOD vs T for '{attr}'; teacher and NDS as reference lines.",
                  plots.fairness_vs_t, fair, attr)
            grp = a.table("fairness_groups")
            grp = grp[grp["attribute"] == attr]
            if not grp.empty:
                piv = grp.assign(model=[model_label(r, t) for r, t in zip(
                    grp["role"], grp["T"], strict=True)]).pivot_table(
                    index="model", columns="group", values="accuracy_mean", sort=False)
                doc.table(_display(piv.reset_index()),
                          "Accuracy (%) per group, mean over seeds.")

    doc.h("Individual fairness")
    ind = a.table("individual")
    if ind.empty:
        doc.p("Skipped: " + next((n for n in a.notes if "individual" in n), "no features."))
    else:
        doc.p("I(f): lower is fairer. Consistency (Zemel et al.): 1 − the mean share of an "
              "input's k nearest neighbours that get a different predicted class; higher is "
              "fairer. The paper leaves the distance d, the pairing and the norm open; the "
              "choices are stated under Configuration. Read both beside accuracy: a model that "
              "predicts the same for every input scores I(f) = 0 and consistency 1.")
        shown = ind.copy()
        shown.insert(0, "model", [model_label(r, t) for r, t in zip(shown["role"], shown["T"],
                                                                      strict=True)])
        shown = shown.drop(columns="role").rename(columns={
            "n_runs": "runs", "individual_mean": "I(f) mean", "individual_std": "I(f) std",
            "consistency_mean": "consistency mean", "consistency_std": "consistency std"})
        doc.table(_display(shown, {c: 4 for c in shown.columns if c.startswith(("I(f)", "cons"))}))
        _plot(a, doc, out / "individual_vs_T.png", "I(f) and consistency vs T.",
              plots.individual_vs_t, ind,
              f"k = {a.graph.k} nearest, Euclidean in {a.graph.description}")

    doc.h("Disagreement")
    dis = a.table("disagreement")
    if dis.empty:
        doc.p("Not computed: it needs DS runs and teacher or NDS runs.")
    else:
        mean = dis.groupby(["comparison", "T"], sort=True)["share_mean"].mean().unstack(0)
        mean.columns = [f"{REFERENCE[c]} vs DS (%)" for c in mean.columns]
        doc.table(_display(mean.reset_index()),
                  "Share of test inputs (mean over classes) on which the two models disagree.")
        shares = {}
        for comparison in ("teacher_vs_ds", "nds_vs_ds"):
            d = dis[dis["comparison"] == comparison]
            if not d.empty:
                shares[f"{REFERENCE[comparison]} vs DS(T)"] = d.pivot(
                    index="class", columns="T", values="share_mean").to_numpy()
        _plot(a, doc, out / "disagreement_by_class.png",
              "Per true class and T: % of inputs on which the two models predict differently.",
              plots.disagreement_classes, shares, s.class_names, temps)
        t_max = max(temps)
        mats = {f"{REFERENCE[c]} vs DS(T={t_max:g})": m
                for (c, t), m in a.matrices.items() if t == t_max}
        if mats:
            _plot(a, doc, out / "disagreement_matrix.png",
                  f"Off-diagonal prediction-vs-prediction counts at T = {t_max:g}: row = the "
                  "reference model's prediction, column = the DS prediction.",
                  plots.disagreement_matrices, mats, s.class_names)

    doc.h("Runs")
    runs = a.table("runs")
    doc.p(f"{len(runs)} runs analysed. Skipped run directories: {len(a.table('skipped'))}; "
          f"failed runs: {len(a.table('failed'))}.")
    if len(a.table("skipped")):
        doc.table(a.table("skipped"), "Skipped: incomplete or corrupt run directories.")
    if len(a.table("failed")):
        doc.table(_display(a.table("failed")), "Failed in training (failed/*.json).")
    doc.h("Notes", 3)
    doc.ul(a.notes or ["None."])
    doc.h("Files", 3)
    doc.ul([f"{p.name}" for p in csv_paths])
    return doc


_FAIR_COLUMNS = {"n_runs": "runs", "dpd_mean": "DPD (%)", "dpd_std": "DPD std",
                 "eod_mean": "EOD (%)", "eod_std": "EOD std", "dpd_ci_low": "DPD CI low",
                 "dpd_ci_high": "DPD CI high", "eod_ci_low": "EOD CI low",
                 "eod_ci_high": "EOD CI high"}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
