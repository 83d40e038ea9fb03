"""The report document, one function per section; numbers are formatted only here."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from kdfair.analysis import capability, measures, plots
from kdfair.analysis.common import Analysis, ci_text, config_of, fmt_t, model_label
from kdfair.analysis.document import Document
from kdfair.analysis.methods import ranking_sentences
from kdfair.analysis.text import (
    DIRECTION_WORDS,
    LABELS,
    QUANTITY_WORDS,
    REFERENCE,
    TEST_WORDS,
    ci_words,
    consistency_misleads,
    finding_groups,
    given_teacher,
    no_test_reasons,
    protocol_sentence,
    summary_display,
    tests_used,
)
from kdfair.curves import write_learning_curves
from kdfair.store.index import NOT_RECORDED, run_precision

NORM_WORDS = {"tv": "total variation ½‖p − q‖₁", "l1": "‖p − q‖₁", "l2": "‖p − q‖₂"}


def display(df: pd.DataFrame, digits: dict[str, int] | None = None) -> pd.DataFrame:
    """Round floats for display; T as text; no index or column names left over."""
    df = df.copy()
    df.columns.name = None
    if "T" in df:
        df["T"] = [fmt_t(t) for t in df["T"]]
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col]):
            d = (digits or {}).get(col, 2)
            df[col] = [("–" if not np.isfinite(v) else f"{v:.{d}f}") for v in df[col]]
    return df


def plot(a: Analysis, doc: Document, path: Path, caption: str, fn, *args, **kw) -> None:
    """Draw one figure into the document; a failing figure becomes a note, never an error."""
    try:
        fn(path, *args, **kw)
        doc.image(path, caption)
    except Exception as err:  # noqa: BLE001 - a figure must never cost the report
        a.notes.append(f"plot {path.name} failed: {type(err).__name__}: {err}")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


# --- sections --------------------------------------------------------------------------------


def capability_section(a: Analysis, doc: Document) -> None:
    """Regime, resolution and fairness noise floor, before any finding (capability.py)."""
    said = capability.sentences(a.table("capability"))
    if said:
        doc.h("What this study can show")
        doc.ul(said)


def warnings_section(a: Analysis, doc: Document) -> None:
    w = a.table("warnings")
    doc.h("Warnings")
    doc.ul(list(w["warning"]) if len(w) else ["None: no degenerate or suspicious runs found "
                                              "(checks: a model predicting fewer than half the "
                                              "classes, a teacher less accurate than the NDS, a "
                                              "DS accuracy spread over 3× the NDS's, no DS at "
                                              "T ≤ 10 as accurate or as fair as the NDS)."])


ACCURACY_CAPTION = "Test accuracy vs T; teacher and NDS as reference bands (95 % seed CI)."


def key_results_section(a: Analysis, doc: Document, out: Path) -> None:
    """At most five sentences, each with its number and test, beside the accuracy figure."""
    doc.h("Key results")
    path = _accuracy_figure(a, out)
    if path is None:
        doc.ul(a.key_results)
    else:
        doc.ul_beside(a.key_results, path, ACCURACY_CAPTION)


def _accuracy_figure(a: Analysis, out: Path) -> Path | None:
    """accuracy_vs_T.png, drawn once for the key results and the accuracy section."""
    path = out / "accuracy_vs_T.png"
    if not path.exists():
        acc = a.table("accuracy")
        lo, hi = int(acc["n_runs"].min()), int(acc["n_runs"].max())
        try:
            plots.accuracy_vs_t(path, acc, f"{lo}" if lo == hi else f"{lo}–{hi}")
        except Exception as err:  # noqa: BLE001 - a figure must never cost the report
            a.notes.append(f"plot {path.name} failed: {type(err).__name__}: {err}")
            return None
    return path


def findings_section(a: Analysis, doc: Document) -> None:
    doc.h("Main findings")
    if not a.findings:
        doc.ul(["Nothing to report: no usable runs."])
    doc.groups(finding_groups(a.findings))


def summary_section(a: Analysis, doc: Document) -> None:
    o = a.options
    up, down = DIRECTION_WORDS[o.test_on]
    doc.h("Summary")
    doc.table(summary_display(a),
              f"Seed mean [{ci_words(a)}]. #SC / #TC: classes significant vs "
              f"NDS / teacher on {QUANTITY_WORDS[o.test_on]} ({tests_used(a)}, p < "
              f"{o.significance:g}); in brackets DS higher ({up}) / lower ({down}); 'in every "
              "seed': constant-but-different classes, untestable by Welch. All accuracies, DPD "
              "and EOD in percent.")


def config_section(a: Analysis, doc: Document) -> None:
    s, o, g = a.store, a.options, a.graph
    cfg = config_of(s)
    temps = sorted(set(a.table("runs").query("role == 'ds'")["T"]))
    rows = [("experiment", cfg["name"]), ("data set", cfg["dataset"] or "unknown"),
            ("test inputs", s.n_test), ("classes", s.num_classes),
            ("teacher → student", f"{cfg['teacher'] or '?'} → {cfg['student'] or '?'}"),
            ("distillation", f"{_methods_words(cfg['methods'])}; Hinton KD weight "
                             f"α = {cfg['alpha']}, T² scaling "
                             f"{cfg['t2_scaling']}, teacher policy {cfg['teacher_policy']}"),
            ("temperatures", ", ".join(f"{t:g}" for t in temps) or "none"),
            ("runs found", seed_words(a)),
            ("training precision", precision_words(s.runs)),
            ("class-wise test", f"{tests_used(a)}, two-sided, p < {o.significance:g} "
                                f"(analysis.test: {o.test}, analysis.pairing: {o.pairing})"),
            ("multiple comparisons", "none for #SC/#TC (as the paper); Benjamini–Hochberg "
                                     "counts beside them"),
            ("headline quantity", QUANTITY_WORDS[o.test_on]),
            ("confidence intervals", ci_words(a, detail=True)),
            ("trend tests", f"Spearman ρ of run-level values with T, permutation p "
                            f"({o.permutations} permutations, exact when fewer), over T ≤ 10 "
                            "and over all T"),
            ("individual fairness", (
                f"I(f) = mean over each test input x and each of its k = {g.k} nearest "
                f"neighbours x' of D(f(x), f(x'))/d(x, x'), D = {NORM_WORDS[a.norm]}, d = "
                f"Euclidean in {g.description}; consistency uses the same neighbours"
                if g is not None else "not computed (see notes)")),
            ("options from", a.options_source)]
    doc.h("Configuration")
    doc.table(pd.DataFrame(rows, columns=["setting", "value"]).astype(str))
    doc.table(pd.DataFrame(sorted(o.model_dump().items()), columns=["analysis option",
                                                                     "value"]).astype(str))


def precision_words(runs: list) -> str:
    """The precision the runs trained and were evaluated at (engine.precision): one for all,
    or how many runs used each (the Notes then say the study mixes settings)."""
    counts = Counter(run_precision(r.metrics) for r in runs)
    if set(counts) == {NOT_RECORDED}:
        return ("not recorded (audited predictions, trained outside kdfair, or runs stored "
                "before kdfair recorded it)")
    if len(counts) == 1:
        return f"{next(iter(counts))}, every run (engine.precision)"
    return "mixed: " + ", ".join(f"{p} for {n} runs" for p, n in sorted(counts.items())) + \
        " (engine.precision; see Notes)"


def _methods_words(methods: list[str]) -> str:
    if methods == ["kd"]:
        return "Hinton KD (kd)"
    return (f"methods {', '.join(methods)} (the sections are for {methods[0]}; Method "
            "comparison shows all)")


def seed_words(a: Analysis) -> str:
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


def accuracy_section(a: Analysis, doc: Document, out: Path) -> None:
    acc = a.table("accuracy")
    doc.h("Accuracy")
    doc.table(_metric_display(acc, {"acc": "accuracy (%)"}),
              f"Test accuracy per model: mean [{ci_words(a)}] and std.")
    path = _accuracy_figure(a, out)
    if path is not None:
        doc.image(path, ACCURACY_CAPTION)


def _counts_display(a: Analysis, quantity: str) -> pd.DataFrame:
    c = a.table("classwise_counts")
    c = c[c["quantity"] == quantity]
    rows = []
    for _, r in c.sort_values(["comparison", "T"]).iterrows():
        tested = r["test"] != "none"
        rows.append({
            "comparison": f"DS vs {REFERENCE[r['comparison']]} ({r['count']})",
            "T": f"{r['T']:g}", "test": r["test"] if tested else f"none: {r['reason']}",
            "significant": int(r["n_significant"]) if tested else "–",
            DIRECTION_WORDS[quantity][0]: int(r["n_higher"]) if tested else "–",
            DIRECTION_WORDS[quantity][1]: int(r["n_lower"]) if tested else "–",
            "after BH": int(r["n_significant_bh"]) if tested else "–",
            "different in every seed (untestable by Welch)":
                int(r["n_constant_different"]) if tested else "–",
            "expected by chance": f"{a.options.significance * r['n_testable']:.1f}"
                                  if tested else "–"})
    return pd.DataFrame(rows)


def classwise_section(a: Analysis, doc: Document, out: Path) -> None:
    s, o = a.store, a.options
    doc.h("Class-wise bias")
    doc.p("For each temperature each class is tested between the DS(T) seeds and the NDS seeds "
          "(#SC) and between the DS(T) seeds and the teacher seeds (#TC), twice: on the class's "
          "own accuracy β_c (raw: only this test says a class improved or worsened) and on its "
          "share of accuracy β_c/β (relative: the paper's #SC/#TC; when one class drops, every "
          "other class's share rises, so a shift in share is not an improvement). 'Expected by "
          f"chance' = {o.significance:g} × testable classes; Benjamini–Hochberg controls it.")
    g = given_teacher(a)
    if g:
        doc.p(g)
    doc.ul(no_test_reasons(a))
    counts = a.table("classwise_counts")
    if counts.empty or not (counts["test"] != "none").any():
        return
    for q in ("raw", "relative"):
        doc.table(_counts_display(a, q), f"Test on {QUANTITY_WORDS[q]} (p < {o.significance:g})"
                  f"; tests: {tests_used(a)}.")
    plot(a, doc, out / "classwise_counts_vs_T.png",
         "#SC and #TC vs T, on relative (paper) and raw accuracy; dashed: after BH.",
         plots.counts_vs_t, counts, s.num_classes, o.significance)
    heatmap_section(a, doc, out)


def heatmap_data(a: Analysis, comparison: str, quantity: str):
    """(difference [rows, T], significant mask, row names, temps, title) from one test."""
    d = a.table("classwise")
    d = d[(d["comparison"] == comparison) & (d["quantity"] == quantity)] if not d.empty else d
    if d.empty:
        return None
    temps = sorted(set(d["T"]))
    c = a.store.num_classes
    diff = np.full((c, len(temps)), np.nan)
    sig = np.zeros((c, len(temps)), bool)
    const = np.zeros((c, len(temps)), bool)
    for j, t in enumerate(temps):
        rows = d[d["T"] == t]
        idx = rows["class"].to_numpy(int)
        diff[idx, j] = rows["diff"].to_numpy(float)
        sig[idx, j] = rows["significant"].to_numpy(bool)
        const[idx, j] = rows["constant_different"].to_numpy(bool) & ~sig[idx, j]
    test = f"{rows['test'].iloc[0].replace('welch', 'Welch')} test on " \
           f"{QUANTITY_WORDS[quantity]}, p < {a.options.significance:g}"
    keep = np.arange(c)
    title = f"DS − {REFERENCE[comparison]}; dots: significant ({test})"
    if c > plots.MAX_ROWS:
        n_sig = sig.sum(1)
        mag = np.nan_to_num(np.abs(diff)).max(1)
        if n_sig.any():
            keep = np.flatnonzero(n_sig)
            keep = keep[np.lexsort((-mag[keep], -n_sig[keep]))][:plots.MAX_ROWS]
            title = (f"Classes significant at some T ({len(keep)} of {int((n_sig > 0).sum())} "
                     f"shown, of {c}): DS − {REFERENCE[comparison]}; dots: {test}")
        else:
            keep = np.argsort(-mag)[:30]
            title = f"No class significant ({test}); the 30 largest differences of {c} classes"
    return (diff[keep], sig[keep], const[keep], [a.store.class_names[i] for i in keep], temps,
            title)


def heatmap_section(a: Analysis, doc: Document, out: Path) -> None:
    doc.h("Heat maps, one per test", 3)
    doc.p("Colour and dots come from the same test: colour = the mean difference the test "
          "compares (DS − reference), dots = significant by that test, crosses = different in "
          "every seed (constant within each group; untestable by Welch).")
    for q in ("raw", "relative"):
        for comparison in LABELS:
            data = heatmap_data(a, comparison, q)
            if data is None:
                continue
            diff, sig, const, names, temps, title = data
            unit = ("class accuracy, percentage points" if q == "raw"
                    else "β_c/β, points of % of overall accuracy")
            plot(a, doc, out / f"classwise_heatmap_{q}_{comparison}.png",
                 f"DS − {REFERENCE[comparison]} on {QUANTITY_WORDS[q]} (red: DS lower, blue: "
                 "DS higher; dots: significant).", plots.class_change_heatmap, diff, sig, names,
                 temps, title, colour_label=f"DS − {REFERENCE[comparison]} ({unit})",
                 constant=const)


def _metric_display(rows: pd.DataFrame, metrics: dict[str, str], digits: int = 2
                    ) -> pd.DataFrame:
    """model, runs, then per metric 'mean [CI]' and std."""
    out = []
    for _, r in rows.iterrows():
        row = {"model": model_label(r["role"], r["T"]), "runs": int(r["n_runs"])}
        for col, name in metrics.items():
            row[name] = ci_text(r[f"{col}_mean"], r.get(f"{col}_ci_low"),
                                r.get(f"{col}_ci_high"), digits)
            row[f"{name} std"] = "–" if not np.isfinite(r[f"{col}_std"]) else \
                f"{r[f'{col}_std']:.{digits}f}"
        out.append(row)
    return pd.DataFrame(out)


def fairness_section(a: Analysis, doc: Document, out: Path) -> None:
    s, o = a.store, a.options
    fair = a.table("fairness")
    group = measures.of("group")
    drawn = [m for m in group if m.headline and m.at_a_glance]
    doc.h("Group fairness")
    if not s.attributes:
        doc.p("Skipped: the data set has no sensitive attributes (or none could be read).")
        return
    doc.p("DPD and EOD as Fairlearn defines them (between groups, worst case), in percent, "
          "lower is fairer; " + ("binary task: Fairlearn's demographic_parity_difference and "
                                 "equalized_odds_difference." if s.num_classes == 2 else
                                 "multi-class: one-vs-rest per class, averaged over classes.")
          + f" Mean [{ci_words(a)}]."
          + (f" The plot's shaded band: 95 % bootstrap over the test set ({o.bootstrap} "
             "resamples)." if o.bootstrap else ""))
    for attr in s.attributes:
        rows = fair[fair["attribute"] == attr]
        doc.h(f"Attribute '{attr}' (groups: {', '.join(s.attribute_groups[attr])})", 3)
        doc.table(_metric_display(rows, {m.column: m.heading() for m in group}))
        plot(a, doc, out / f"fairness_{_safe(attr)}_vs_T.png",
             f"{' and '.join(m.label for m in drawn)} vs T for '{attr}'; teacher and NDS as "
             "reference bands.", plots.fairness_vs_t, fair, attr, drawn)
        plot(a, doc, out / f"tradeoff_{_safe(attr)}.png",
             f"Accuracy vs {' and '.join(m.label for m in drawn)} for '{attr}': teacher, NDS "
             "and the DS at each T (error bars: 95 % seed CIs), as Fairlearn's dashboard shows "
             "models — down and to the right is better.", plots.tradeoff, a.table("accuracy"),
             fair, attr, drawn)
        grp = a.table("fairness_groups")
        grp = grp[grp["attribute"] == attr]
        if not grp.empty:
            piv = grp.assign(model=[model_label(r, t) for r, t in zip(
                grp["role"], grp["T"], strict=True)]).pivot_table(
                index="model", columns="group", values="accuracy_mean", sort=False)
            piv.columns.name = None
            doc.table(display(piv.reset_index()), "Accuracy (%) per group, mean over seeds.")


def individual_section(a: Analysis, doc: Document, out: Path) -> None:
    ind = a.table("individual")
    doc.h("Individual fairness")
    if ind.empty:
        doc.p("Skipped: " + (a.no_individual or "no features."))
        return
    biased = consistency_misleads(a)
    doc.p("I(f): lower is fairer. Consistency (Zemel et al.): 1 − the mean share of an input's "
          "k nearest neighbours that get a different predicted class; "
          + ("higher is fairer only where neighbours share a label more than a group (below). "
             if biased else "higher is fairer. ") +
          "Confidence: mean max-probability. I(f) is read beside confidence: a model with "
          "softer outputs scores a lower I(f) without treating similar inputs more alike, and a "
          "constant model scores I(f) = 0. Definitions: docs/analysis.md.")
    doc.table(_metric_display(ind, {m.column: m.heading() for m in measures.of("individual")},
                              4))
    if biased:
        doc.p(biased)
    c = a.table("individual_vs_confidence")
    if not c.empty:
        r = c.iloc[0]
        doc.p(f"Across {int(r['n_runs'])} runs, I(f) vs confidence: Pearson r = "
              f"{r['pearson_r']:.3f}, Spearman ρ = {r['spearman_rho']:.3f}. "
              + ("|r| > 0.9: I(f) follows confidence here; the report does not rank models "
                 "by it." if r["tracks_confidence"] else "|r| ≤ 0.9."))
    plot(a, doc, out / "individual_vs_T.png", "I(f), consistency and confidence vs T.",
         plots.individual_vs_t, ind, not biased,
         f"k = {a.graph.k} nearest, Euclidean in {a.graph.description}")


def counterfactual_section(a: Analysis, doc: Document, out: Path) -> None:
    cf = a.table("counterfactual")
    if cf.empty:
        return
    doc.h("Counterfactual pairs", 3)
    doc.p("Each test input beside its counterfactual: the same input with one sensitive "
          "attribute changed and nothing else (how each is drawn: Notes). I_cf = mean over test "
          f"inputs of D(f(x), f(x′)), D = {_norm_words(a.norm)}; flip rate = share of test "
          "inputs whose predicted class changes (%). Both are 0 for a model that ignores the "
          f"attribute, whatever its confidence; lower is fairer. Mean [{ci_words(a)}]. "
          "Definitions: docs/analysis.md.")
    for attr in dict.fromkeys(cf["attribute"]):
        doc.table(_metric_display(cf[cf["attribute"] == attr],
                                  {m.column: m.heading() for m in measures.of("counterfactual")},
                                  3),
                  f"Counterfactuals that change only '{attr}'.")
    plot(a, doc, out / "counterfactual_vs_T.png",
         "Counterfactual flip rate and I_cf vs T, per attribute; teacher and NDS as bands.",
         plots.counterfactual_vs_t, cf)


def _norm_words(norm: str) -> str:
    return {"tv": "total variation ½‖p − q‖₁", "l1": "‖p − q‖₁",
            "l2": "‖p − q‖₂"}.get(norm, norm)


def _nds_partner(a: Analysis) -> str:
    """The DS's NDS partner in words: the NDS of the same seed, unless some DS seed has none
    and was compared with every NDS run (``disagreement.partner``) — then said, with which."""
    pairs = a.table("disagreement_runs")
    nds = pairs[pairs["comparison"] == "nds_vs_ds"] if not pairs.empty else pairs
    runs = a.table("runs")
    seed = dict(zip(runs["run_id"], runs["seed"], strict=True))
    alone = sorted({int(seed[d]) for d, r in zip(nds.get("ds_run", []), nds.get(
        "reference_run", []), strict=True) if seed.get(d) != seed.get(r)})
    if not alone:
        return "the NDS of the same seed"
    return ("the NDS of the same seed; DS seed(s) " + ", ".join(map(str, alone))
            + ", which no NDS run has, are compared with every NDS run")


def disagreement_section(a: Analysis, doc: Document, out: Path) -> None:
    s = a.store
    dis = a.table("disagreement")
    doc.h("Disagreement")
    if dis.empty:
        doc.p("Not computed: it needs DS runs and teacher or NDS runs.")
        return
    summ = a.table("disagreement_summary").rename(columns={"n_pairs": "n_runs"})
    shown = _metric_display(summ, {"disagreement": "disagreement (%)"})
    shown.insert(1, "partner", [REFERENCE[c] for c in summ["comparison"]])
    doc.table(shown.rename(columns={"runs": "pairs"}),
              "Share of test inputs on which the DS run and its partner (the teacher it "
              f"distilled from; {_nds_partner(a)}) predict differently: mean ["
              + ci_words(a).replace("seed", "pair") + "] and std.")
    temps = sorted(set(dis["T"]))
    shares = {}
    for comparison in ("teacher_vs_ds", "nds_vs_ds"):
        d = dis[dis["comparison"] == comparison]
        if not d.empty:
            shares[f"{REFERENCE[comparison]} vs DS(T)"] = d.pivot(
                index="class", columns="T", values="share_mean").to_numpy()
    plot(a, doc, out / "disagreement_by_class.png",
         "Per true class and T: % of inputs on which the two models predict differently.",
         plots.disagreement_classes, shares, s.class_names, temps)
    t_max = max(temps)
    mats = {f"{REFERENCE[c]} vs DS(T={t_max:g})": m
            for (c, t), m in a.matrices.items() if t == t_max}
    if mats:
        plot(a, doc, out / "disagreement_matrix.png",
             f"Off-diagonal prediction-vs-prediction counts at T = {t_max:g}: row = the "
             "reference model's prediction, column = the DS prediction.",
             plots.disagreement_matrices, mats, s.class_names)


def trends_section(a: Analysis, doc: Document) -> None:
    tr = a.table("trends")
    doc.h("Trends in T")
    if tr.empty:
        doc.p("No trend tests: there are no DS runs.")
        return
    doc.p(f"Spearman ρ of run-level DS values with T (#SC/#TC: one value per T), two-sided "
          f"permutation p; a trend is stated in the findings only where p < "
          f"{a.options.significance:g}.")
    shown = tr.assign(label=[f"{lab} ({u})" if u else lab
                             for lab, u in zip(tr["label"], tr["unit"], strict=True)])
    shown["significant"] = shown["significant"].map({True: "yes", False: "no"})
    shown = shown[list(TREND_HEADINGS)].rename(columns=TREND_HEADINGS)
    doc.table(display(shown, {"ρ": 2, "p": 4, "p BH": 4, "min p": 3, "partial ρ": 2,
                              "partial p": 3}),
              "p BH: Benjamini–Hochberg over all trend tests of this table; span: max − min of "
              "the per-T means; resolution: the difference between two T a Welch test finds "
              "with 80 % power; min p: the smallest p a permutation test can give with these "
              "points (one per T); partial ρ, p: Spearman controlling for each run's accuracy. "
              "trends.csv has every column.")


TREND_HEADINGS = {"label": "quantity", "range": "range", "n_points": "points", "rho": "ρ",
                  "p": "p", "p_bh": "p BH", "significant": "sig.", "span": "span",
                  "resolution": "resolution", "min_p": "min p", "partial_rho": "partial ρ",
                  "partial_p": "partial p"}


def paper_section(a: Analysis, doc: Document) -> None:
    p = a.table("paper_vs_study")
    if p.empty:
        return
    doc.h("Paper vs this study")
    doc.p("The paper's reported values (Mohammadshahi & Ioannou, TMLR 2025; shipped with kdfair "
          "as presets/paper-numbers.yaml) beside this study's seed mean and 95 % seed CI. "
          "Difference = this study − paper. #SC/#TC: relative accuracy, this study's test; "
          "counts have no CI.")
    changes = a.table("paper_protocol_changes")
    if "paper_protocol_changes" in a.tables:
        doc.p(protocol_sentence(a.store.experiment.get("name"), changes))
        if not changes.empty:
            doc.table(changes)
    rows = []
    for _, r in p.iterrows():
        d = 0 if r["quantity"].startswith("#") else 4 if r["quantity"] == "I(f)" else 2

        def f(v, d=d):
            return "–" if v is None or not np.isfinite(v) else f"{v:.{d}f}"

        inside = r["paper_in_ci"]
        rows.append({"source": r["source"], "quantity": r["quantity"], "model": r["model"],
                     "paper": f(r["paper"]), "this study": f(r["this_study"]),
                     "95 % CI": "–" if not np.isfinite(r["ci_low"]) else
                     f"[{f(r['ci_low'])}, {f(r['ci_high'])}]",
                     "difference": f(r["difference"]),
                     "paper in CI": "–" if inside is None or (isinstance(inside, float)
                                                              and np.isnan(inside))
                     else "yes" if inside else "no"})
    doc.table(pd.DataFrame(rows))


def methods_section(a: Analysis, doc: Document) -> None:
    """Every method's DS grid (and each control) side by side, then the one-screen ranking."""
    if "method_comparison" not in a.tables:
        return
    comp, rank = a.table("method_comparison"), a.table("method_ranking")
    attrs = list(a.store.attributes)
    group = [m for m in measures.of("group", headline_only=True) if m.at_a_glance]
    doc.h("Method comparison")
    doc.p("Each distillation method's students analysed exactly as the first method's in the "
          "sections above: against the same teacher and NDS, with the same tests "
          f"({tests_used(a)}, p < {a.options.significance:g}) and 95 % seed CIs. The control "
          "trains without a teacher; its #SC / #TC compare it with the NDS / the teacher. No "
          "test compares two methods with each other.")
    rows = []
    for _, r in comp.iterrows():
        row = {"method": r["method"], "T": "–" if not np.isfinite(r["T"]) else fmt_t(r["T"]),
               "runs": int(r["n_runs"]),
               "accuracy (%)": ci_text(r["acc_mean"], r["acc_ci_low"], r["acc_ci_high"])}
        for label in ("#SC", "#TC"):
            row[label] = "–" if not np.isfinite(r.get(label, np.nan)) else int(r[label])
        for attr in attrs:
            for m in group:
                k = measures.per_attribute_key(m, attr)
                row[f"{m.label} {attr} ({m.unit})"] = ci_text(r.get(f"{k}_mean"), r.get(
                    f"{k}_ci_low"), r.get(f"{k}_ci_high"))
        if "individual_mean" in r:
            row["I(f)"] = ci_text(r["individual_mean"], r.get("individual_ci_low"),
                                  r.get("individual_ci_high"), 4)
        rows.append(row)
    doc.table(pd.DataFrame(rows), "Per method and T: seed mean [95 % CI]; #SC / #TC: classes "
              f"significant on {QUANTITY_WORDS[a.options.test_on]}. Percent for accuracy, DPD "
              "and EOD.")
    doc.h("Which method leaves the least bias", level=3)
    doc.ul(ranking_sentences(rank) or ["Fewer than two distillation methods: nothing to rank."])
    shown = rank.copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda v: "–" if not np.isfinite(v) else f"{v:.4g}")
    doc.table(shown, "Per method: its best accuracy over T (and that T), and the mean over T "
              "of #SC, #TC, EOD, DPD and I(f) — lower is less of that measure. Descriptive: "
              "each method's own numbers.")


def curves_section(a: Analysis, doc: Document, out: Path) -> None:
    """Per role, every run's training loss and train / validation accuracy per epoch."""
    formats = ("png", "svg", "pdf") if a.options.vector_figures else ("png",)
    try:
        figures = write_learning_curves(a.store.runs, out, formats=formats)
    except Exception as err:  # noqa: BLE001 - a figure must never cost the report
        a.notes.append(f"learning curves failed: {type(err).__name__}: {err}")
        return
    if figures:
        doc.h("Learning curves")
        for role, path in figures.items():
            doc.image(path, f"{model_label(role, 0).split()[0]}: training loss and train / "
                            "validation accuracy per epoch, one line per run "
                            "(metrics.json history).")


def runs_section(a: Analysis, doc: Document, csv_paths: list[Path]) -> None:
    runs = a.table("runs")
    doc.h("Runs and files")
    doc.p(f"{len(runs)} runs analysed. Skipped run directories: {len(a.table('skipped'))}; "
          f"failed runs: {len(a.table('failed'))}.")
    if len(a.table("skipped")):
        doc.table(a.table("skipped"), "Skipped: incomplete or corrupt run directories.")
    if len(a.table("failed")):
        doc.table(display(a.table("failed")), "Failed in training (failed/*.json).")
    doc.h("Notes", 3)
    doc.ul(a.notes or ["None."])
    doc.h("Files", 3)
    doc.p("One CSV per table; units: percent for every accuracy, DPD, EOD, disagreement and "
          "class-wise mean/diff (relative: β_c/β in % of β); I(f), consistency and confidence "
          "are unitless.")
    doc.links([p.name for p in csv_paths])


def build_document(a: Analysis, out: Path, csv_paths: list[Path]) -> Document:
    """The whole report, section by section (figures are written into ``out``)."""
    doc = Document(f"kdfair report — {config_of(a.store)['name']}")
    token = plots.VECTOR.set(a.options.vector_figures)
    try:
        _sections(a, doc, out, csv_paths)
    finally:
        plots.VECTOR.reset(token)
    return doc


def _sections(a: Analysis, doc: Document, out: Path, csv_paths: list[Path]) -> None:
    capability_section(a, doc)
    warnings_section(a, doc)
    key_results_section(a, doc, out)
    summary_section(a, doc)
    findings_section(a, doc)
    paper_section(a, doc)
    methods_section(a, doc)
    config_section(a, doc)
    accuracy_section(a, doc, out)
    classwise_section(a, doc, out)
    fairness_section(a, doc, out)
    individual_section(a, doc, out)
    counterfactual_section(a, doc, out)
    disagreement_section(a, doc, out)
    trends_section(a, doc)
    curves_section(a, doc, out)
    runs_section(a, doc, csv_paths)


__all__ = ["build_document", "TEST_WORDS"]
