"""Turn a run store into the study's answers: tables (``analyze``) and a report (``write_report``).

``analyze`` reads every run once (see runs.py), then computes the class-wise tests, group and
individual fairness, disagreement, seed CIs, trend tests and warnings from the reduced runs; its
tables are numeric (percent for accuracy, DPD, EOD, disagreement). ``write_report`` adds the
plots and writes ``<results>/report/{report.md, report.html, *.csv, *.png|svg|pdf}`` through a
temporary directory, with a ``manifest.json`` of what it wrote; other files are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdfair.analysis import (
    capability,
    classwise,
    disagreement,
    fairness,
    individual,
    measures,
    records,
    verdicts,
)
from kdfair.analysis.checks import phenomenon_warnings, run_warnings
from kdfair.analysis.common import Analysis, by_group, rows_of, sort_roles
from kdfair.analysis.document import Document, csv_safe
from kdfair.analysis.methods import comparison_table, methods_in, only, ranking_table
from kdfair.analysis.paper import paper_entry, paper_gap, paper_table, protocol_changes
from kdfair.analysis.records import Finding
from kdfair.analysis.runs import ReducedRun, labels_of, reduce_runs
from kdfair.analysis.sections import build_document
from kdfair.analysis.text import findings, key_results, summary_display, summary_table
from kdfair.analysis.trends import trend_table
from kdfair.config import AnalysisConfig
from kdfair.errors import StoreError
from kdfair.paths import is_safe_name
from kdfair.progress import step
from kdfair.reading import MAX_JSON_BYTES, read_text
from kdfair.store import StudyIndex as Store
from kdfair.store import open_store
from kdfair.store.files import inside
from kdfair.store.index import NoRuns

TOP_FLIPS = 200  # entries kept per disagreement matrix when there are many classes


@dataclass
class ReportResult:
    """Where the report went, and what the CLI prints."""

    md_path: Path
    html_path: Path
    csv_paths: list[Path]
    summary: pd.DataFrame  # display strings, as the report's Summary table shows them
    findings: list[str]  # the warnings ("Warning: …") then the findings, as sentences
    key_results: list[str] = field(default_factory=list)
    manifest_path: Path | None = None
    records: list[Finding] = field(default_factory=list)  # the findings as data


def resolve_options(store: Store, options: AnalysisConfig | None,
                    notes: list[str]) -> tuple[AnalysisConfig, str]:
    """The given options, else the ``analysis`` section of experiment.json, else the defaults."""
    if options is not None:
        return options, "given by the caller"
    section = store.experiment.get("analysis")
    if isinstance(section, dict):
        try:
            return AnalysisConfig.model_validate(section), "experiment.json"
        except ValueError as err:
            notes.append(f"experiment.json's analysis section is invalid ({err}); "
                         "defaults are used.")
    return AnalysisConfig(), "defaults"


def _graph(store: Store, opts: AnalysisConfig) -> tuple[individual.NeighbourGraph | None, str]:
    """(the neighbour graph of the test features, '') or (None, why individual fairness is
    skipped)."""
    if not store.features_path.exists():
        return None, ("test_features.npy is missing, so individual fairness (I(f), "
                      "consistency) is skipped.")
    try:
        shape = np.load(store.features_path, mmap_mode="r", allow_pickle=False).shape
        if shape[0] != store.n_test:
            return None, (f"test_features.npy has {shape[0]} rows for {store.n_test} test "
                          "inputs; individual fairness is skipped.")
        return individual.cached_graph(store.root, opts.similarity, opts.similarity_dim,
                                       opts.individual_k), ""
    except (OSError, ValueError) as err:
        return None, f"test_features.npy cannot be used ({err}); individual fairness is skipped."


# --- the analysis ----------------------------------------------------------------------------


def _runs_table(results: list[ReducedRun]) -> pd.DataFrame:
    rows = []
    for r in results:
        reported = r.info.metrics.get("test_acc")
        rows.append({
            "run_id": r.info.run_id, "role": r.info.role, "T": r.info.temperature,
            "seed": r.info.seed, "given": r.info.given,
            "teacher_run_id": r.info.teacher_run_id if r.info.role == "ds" else None,
            "accuracy": 100 * r.accuracy,
            "reported_test_acc": 100 * reported if isinstance(reported, (int, float)) else np.nan,
            "confidence": r.confidence, "individual": r.individual,
            "consistency": r.consistency,
        })
    return sort_roles(pd.DataFrame(rows))


def _class_accuracy_table(runs: pd.DataFrame, class_acc: np.ndarray,
                          names: list[str]) -> pd.DataFrame:
    parts = []
    for (role, temp), idx in runs.groupby(["role", "T"], dropna=False, sort=False).groups.items():
        a = 100 * class_acc[np.asarray(idx)]
        parts.append(pd.DataFrame({
            "role": role, "T": temp, "class": np.arange(a.shape[1]), "class_name": names,
            "n_runs": len(a), "acc_mean": a.mean(0),
            "acc_std": a.std(0, ddof=1) if len(a) > 1 else np.nan}))
    return sort_roles(pd.concat(parts, ignore_index=True))


def _fairness(store: Store, runs: pd.DataFrame, results: list[ReducedRun], labels: np.ndarray,
              opts: AnalysisConfig, notes: list[str]) -> dict[str, pd.DataFrame]:
    c = store.num_classes
    binary = c == 2
    keys = [m.key for m in measures.of("group")]
    per_run, per_group, per_class = [], [], []
    for attr, codes in store.attributes.items():
        names = store.attribute_groups[attr]
        if len(np.unique(codes[codes >= 0])) < 2:
            notes.append(f"attribute {attr!r} has fewer than two groups in the test set; "
                         "its fairness differences are 0 by definition.")
        for (_, row), r in zip(runs.iterrows(), results, strict=True):
            rates = fairness.ovr_rates(labels, r.pred, codes, c)
            values = measures.group_values(rates, binary)
            per_run.append({"run_id": row["run_id"], "role": row["role"], "T": row["T"],
                            "seed": row["seed"], "attribute": attr,
                            **{k: measures.get(k).scale * v for k, v in values.items()},
                            "undefined_cells": fairness.undefined_cells(rates, binary)})
            g = fairness.group_table(rates, names, binary=binary)
            g.insert(0, "attribute", attr)
            g.insert(0, "T", row["T"])
            g.insert(0, "role", row["role"])
            per_group.append(g)
            if c > 2:  # multi-class: one-vs-rest selection rate of every class in every group
                sel = rates.selection
                per_class.append(pd.DataFrame({
                    "role": row["role"], "T": row["T"], "attribute": attr,
                    "group": np.repeat([names[i] for i in rates.groups], c),
                    "class": np.tile(np.arange(c), len(sel)),
                    "selection_rate": 100 * sel.ravel()}))
        bad = max((p["undefined_cells"] for p in per_run if p["attribute"] == attr), default=0)
        if bad:
            notes.append(f"attribute {attr!r}: up to {bad} (group, class) cells have no positive "
                         "(or no negative) test inputs; Fairlearn counts their TPR (FPR) as 0, "
                         "which can inflate EOD.")
    runs_df = pd.DataFrame(per_run)
    summary = by_group(runs_df, keys, ("attribute",), opts.seed_resamples,
                       opts.random_seed, opts.seed_ci) if per_run else pd.DataFrame()
    if per_run and opts.bootstrap > 0:
        summary = _bootstrap(summary, runs, results, labels, store, opts.bootstrap)
    groups = pd.DataFrame()
    if per_group:
        allg = pd.concat(per_group, ignore_index=True)
        allg["accuracy"] *= 100
        cols = ["accuracy"] + (["selection_rate"] if "selection_rate" in allg else [])
        if "selection_rate" in allg:
            allg["selection_rate"] *= 100
        groups = by_group(allg, ["n", *cols], ("attribute", "group"))
        groups = groups.drop(columns="n_std").rename(columns={"n_mean": "n"})
    out = {"fairness": summary, "fairness_runs": runs_df, "fairness_groups": groups}
    if per_class:
        sel = by_group(pd.concat(per_class, ignore_index=True), ["selection_rate"],
                       ("attribute", "group", "class"))
        sel.insert(sel.columns.get_loc("class") + 1, "class_name",
                   [store.class_names[i] for i in sel["class"]])
        out["fairness_selection"] = sel
    return out


def _bootstrap(summary: pd.DataFrame, runs: pd.DataFrame, results: list[ReducedRun],
               labels: np.ndarray, store: Store, replicates: int) -> pd.DataFrame:
    """Add 95% percentile bootstrap CIs (test-set resampling) of each seed-mean group measure
    (``<key>_testset_ci_low/high``)."""
    summary = summary.copy()
    group = measures.of("group")
    for m in group:
        summary[f"{m.key}_testset_ci_low"] = np.nan
        summary[f"{m.key}_testset_ci_high"] = np.nan
    binary = store.num_classes == 2
    for i, row in summary.iterrows():
        idx = rows_of(runs, row["role"], row["T"]).index  # runs has a 0..n-1 index
        draws = fairness.bootstrap_group_means(
            labels, [results[j].pred for j in idx], store.attributes[row["attribute"]],
            store.num_classes, replicates, lambda r: measures.group_values(r, binary))
        for m in group:
            summary.loc[i, [f"{m.key}_testset_ci_low", f"{m.key}_testset_ci_high"]] = \
                m.scale * np.nanpercentile(draws[m.key], [2.5, 97.5])
    return summary


def _disagreement(store: Store, results: list[ReducedRun], labels: np.ndarray,
                  temps: list[float], opts: AnalysisConfig
                  ) -> tuple[dict[str, pd.DataFrame], dict]:
    c = store.num_classes
    preds = {r.info.run_id: r.pred for r in results}
    refs = {role: {r.info.run_id: r.info.seed for r in results if r.info.role == role}
            for role in ("teacher", "nds")}
    rows, flips, mats, pairs = [], [], {}, []
    for temp in temps:
        ds_runs = [r.info for r in results if r.info.role == "ds" and r.info.temperature == temp]
        for comparison, role in (("teacher_vs_ds", "teacher"), ("nds_vs_ds", "nds")):
            if not refs[role] or not ds_runs:
                continue
            shares, mat = [], np.zeros((c, c), np.float64)
            for ds in ds_runs:
                tid = ds.teacher_run_id if role == "teacher" else None
                for ref in disagreement.partner(ds.seed, tid, refs[role]):
                    pairs.append({"comparison": comparison, "role": "ds", "T": temp,
                                  "ds_run": ds.run_id, "reference_run": ref,
                                  "disagreement": 100 * float(np.mean(
                                      preds[ref] != preds[ds.run_id]))})
                    shares.append(disagreement.disagreement_by_class(preds[ref], preds[ds.run_id],
                                                                     labels, c))
                    mat += disagreement.offdiag_matrix(preds[ref], preds[ds.run_id], c)
            s = 100 * np.asarray(shares)
            mat /= len(shares)
            if temp == temps[-1]:  # the report draws the largest T; the table keeps every T
                mats[(comparison, temp)] = mat
            rows.append(pd.DataFrame({
                "comparison": comparison, "T": temp, "class": np.arange(c),
                "class_name": store.class_names, "n_pairs": len(s), "share_mean": s.mean(0),
                "share_std": s.std(0, ddof=1) if len(s) > 1 else np.nan}))
            a, b = np.nonzero(mat)
            vals = mat[a, b]
            if c > 100 and len(vals) > TOP_FLIPS:
                top = np.argsort(vals)[::-1][:TOP_FLIPS]
                a, b, vals = a[top], b[top], vals[top]
            flips.append(pd.DataFrame({
                "comparison": comparison, "T": temp, "reference_pred": a, "ds_pred": b,
                "reference_name": [store.class_names[i] for i in a],
                "ds_name": [store.class_names[i] for i in b], "mean_count": vals}))
    cols = ["comparison", "T", "class", "class_name", "n_pairs", "share_mean", "share_std"]
    pair_df = pd.DataFrame(pairs, columns=["comparison", "role", "T", "ds_run", "reference_run",
                                           "disagreement"])
    tables = {
        "disagreement_summary": by_group(pair_df, ["disagreement"], ("comparison",),
                                         opts.seed_resamples, opts.random_seed,
                                         opts.seed_ci, {"disagreement": (0.0, 100.0)}).rename(
            columns={"n_runs": "n_pairs"}),
        "disagreement_runs": pair_df,
        "disagreement": pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols),
        "disagreement_matrix": pd.concat(flips, ignore_index=True) if flips else pd.DataFrame(),
    }
    return tables, mats


def _percent_detail(detail: pd.DataFrame) -> pd.DataFrame:
    """Class-wise detail in percent (raw: % correct; relative: β_c/β in % of β), as every CSV."""
    detail = detail.copy()
    for col in ("mean_ref", "mean_ds", "diff"):
        detail[col] = 100 * detail[col].astype(float)
    return detail


def _individual(runs: pd.DataFrame, opts: AnalysisConfig) -> dict[str, pd.DataFrame]:
    """I(f), consistency and confidence per model, and how closely I(f) follows confidence."""
    ind = by_group(runs, [m.key for m in measures.of("individual")],
                   resamples=opts.seed_resamples, seed=opts.random_seed, ci=opts.seed_ci)
    ok = runs[["individual", "confidence"]].dropna()
    pearson = spearman = float("nan")
    if len(ok) >= 3 and ok["individual"].std() > 0 and ok["confidence"].std() > 0:
        pearson = float(ok["individual"].corr(ok["confidence"]))
        spearman = float(ok["individual"].corr(ok["confidence"], method="spearman"))
    corr = pd.DataFrame([{"n_runs": len(ok), "pearson_r": pearson, "spearman_rho": spearman,
                          "tracks_confidence": bool(abs(pearson) > CONFIDENCE_LIMIT)}])
    return {"individual": ind, "individual_vs_confidence": corr}


def _neighbours(graph: individual.NeighbourGraph, labels: np.ndarray,
                attributes: dict[str, np.ndarray]) -> pd.DataFrame:
    """How the similarity space groups the test inputs: the share of neighbour pairs with the
    same label, and with the same group of each attribute (``groups_more_than_label``: the
    attribute wins, so higher consistency is not read as fairer)."""
    label = individual.neighbour_share(labels, graph.neighbours)
    rows = [{"by": "label", "share": label, "groups_more_than_label": False}]
    for attr, codes in attributes.items():
        share = individual.neighbour_share(codes, graph.neighbours)
        rows.append({"by": attr, "share": share, "groups_more_than_label": bool(share > label)})
    return pd.DataFrame(rows)


CONFIDENCE_LIMIT = 0.9  # |r(I(f), confidence)| above which I(f) is not read as fairness


def _counterfactual(store: Store, runs: pd.DataFrame, results: list[ReducedRun],
                    opts: AnalysisConfig, notes: list[str]) -> dict[str, pd.DataFrame]:
    """I_cf (mean D(f(x), f(x'))) and the flip rate (%) per run and attribute, and per model
    with seed CIs; nothing when no run has counterfactual predictions."""
    rows = [{"run_id": row["run_id"], "role": row["role"], "T": row["T"], "seed": row["seed"],
             "attribute": attr, "n_pairs": n, "cf_distance": dist, "cf_flip": 100 * flip}
            for (_, row), r in zip(runs.iterrows(), results, strict=True)
            for attr, (dist, flip, n) in r.counterfactual.items()]
    if not rows:
        return {}
    per_run = pd.DataFrame(rows)
    lacking = [r.info.run_id for r in results if not r.counterfactual]
    if lacking:
        notes.append(f"{len(lacking)} of {len(results)} runs have no counterfactual predictions "
                     f"(e.g. {lacking[0]}: stored before kdfair kept them, or audited); the "
                     "counterfactual measures are over the other runs.")
    how = store.data.get("counterfactuals") or {}
    for attr in dict.fromkeys(per_run["attribute"]):
        if attr in how:
            n = int(per_run.loc[per_run["attribute"] == attr, "n_pairs"].iloc[0])
            notes.append(f"Counterfactuals for '{attr}' ({n} of {store.n_test} test inputs "
                         f"have one): {how[attr]}.")
    summary = by_group(per_run, [m.key for m in measures.of("counterfactual")], ("attribute",),
                       opts.seed_resamples, opts.random_seed, opts.seed_ci)
    return {"counterfactual": summary, "counterfactual_runs": per_run}


def _analyze(results_dir: Path | str | Store, options: AnalysisConfig | None = None
             ) -> Analysis:
    """The study's analysis (of a results directory, or of its store already opened); with
    several distillation methods (or a control), the sections are for the first method and
    ``method_comparison`` / ``method_ranking`` put all side by side, each method analysed as
    the first (against the same teacher and NDS)."""
    store = results_dir if isinstance(results_dir, Store) else open_store(results_dir)
    names, controls = methods_in(store)
    if len(names) <= 1 and not controls:
        return _analyze_index(store, options)
    primary = names[0] if names else "kd"
    main = _analyze_index(only(store, primary), options)
    parts = {(primary, False): main}
    parts.update({(m, False): _analyze_index(only(store, m), main.options) for m in names[1:]})
    parts.update({(c, True): _analyze_index(only(store, c, control=True), main.options)
                  for c in controls})
    comparison = comparison_table({k: a.tables["summary"] for k, a in parts.items()})
    warnings = {m: a.tables["warnings"] for (m, _), a in parts.items()}
    main.tables["method_comparison"] = comparison
    main.tables["method_ranking"] = ranking_table(comparison, list(store.attributes), warnings)
    main.notes.append(
        f"This study has {len(names)} distillation method(s) ({', '.join(names)})"
        + (f" and the control(s) {', '.join(controls)}" if controls else "")
        + f"; the sections other than 'Method comparison' are for {primary}, the first.")
    main.tables["notes"] = pd.DataFrame({"note": main.notes}, dtype=object)
    return main


def _capability(store: Store, runs: pd.DataFrame, results: list[ReducedRun],
                labels: np.ndarray, tables: dict[str, pd.DataFrame],
                opts: AnalysisConfig) -> pd.DataFrame:
    """What this study can show (regime, resolution, fairness noise floor), from the first
    NDS run's predictions."""
    nds = [r for r in results if r.info.role == "nds"]
    gap, data_name = paper_gap(str(store.experiment.get("name") or ""))
    return capability.capability_table(
        runs, tables["accuracy"], tables.get("fairness", pd.DataFrame()), labels,
        nds[0].pred if nds else None, store.attributes, store.num_classes, store.n_test,
        opts.significance, gap, data_name, opts.random_seed)


def _analyze_index(store: Store, options: AnalysisConfig | None = None) -> Analysis:
    notes = list(store.notes)
    opts, source = resolve_options(store, options, notes)
    norm = getattr(opts, "individual_norm", "tv")
    graph, no_individual = _graph(store, opts)
    if no_individual:
        notes.append(no_individual)
    step("report: reading the runs")
    results, bad = reduce_runs(store.runs, store.n_test, store.num_classes, graph, norm,
                               counterfactual_targets=store.counterfactual_targets)
    store.skipped.extend(bad)
    if not results:
        raise StoreError(f"{store.root}: no run could be read; skipped: "
                         + "; ".join(f"{n} ({why})" for n, why in store.skipped))
    labels = labels_of(results, store.n_test)
    runs = _runs_table(results)
    order = {rid: i for i, rid in enumerate(runs["run_id"])}
    results = sorted(results, key=lambda r: order[r.info.run_id])
    class_acc = np.stack([r.class_acc for r in results])
    temps = sorted(set(runs.loc[runs["role"] == "ds", "T"]))
    boot = {"resamples": opts.seed_resamples, "seed": opts.random_seed, "ci": opts.seed_ci}

    tables: dict[str, pd.DataFrame] = {"runs": runs}
    acc = by_group(runs, ["accuracy"], **boot)
    tables["accuracy"] = acc.rename(columns={c: c.replace("accuracy_", "acc_")
                                             for c in acc.columns})
    tables["class_accuracy"] = _class_accuracy_table(runs, class_acc, store.class_names)
    step("report: class-wise tests")
    counts, detail = classwise.classwise_tables(
        runs.assign(accuracy=runs["accuracy"] / 100), class_acc, opts.significance, opts.tests,
        store.class_names, method=opts.test, pairing=opts.pairing,
        resamples=opts.permutations, seed=opts.random_seed)
    tables["classwise_counts"], tables["classwise"] = counts, _percent_detail(detail)
    step("report: group fairness")
    if store.attributes:
        tables.update(_fairness(store, runs, results, labels, opts, notes))
    elif store.data and not store.data.get("attributes"):
        notes.append("The data set has no sensitive attributes, so group fairness (DPD, EOD) "
                     "is skipped.")
    step("report: counterfactual and individual fairness")
    tables.update(_counterfactual(store, runs, results, opts, notes))
    if graph is not None:
        tables.update(_individual(runs, opts))
        tables["neighbours"] = _neighbours(graph, labels, store.attributes)
        zero = int((graph.distances == 0).sum())
        if zero:
            notes.append(f"{zero} of {graph.distances.size} neighbour pairs are exact duplicates "
                         "(distance 0); I(f) leaves them out (the ratio is undefined).")
    step("report: disagreement")
    dis, mats = _disagreement(store, results, labels, temps, opts)
    tables.update(dis)
    step("report: trends over T")
    tables["trends"] = trend_table(tables, opts.significance, opts.permutations,
                                   opts.random_seed)
    tables["capability"] = _capability(store, runs, results, labels, tables, opts)
    tables["comparisons"] = verdicts.comparison_table(tables, opts.significance)
    tables["measures"] = measures.long_table(tables)
    warnings = run_warnings(runs, [r.pred for r in results], store.num_classes,
                            tables["accuracy"])
    name = str(store.experiment.get("name") or "")
    warnings += phenomenon_warnings(tables["accuracy"], tables.get("fairness", pd.DataFrame()),
                                    paper=paper_entry(name)[1] is not None)
    tables["warnings"] = records.warnings_table(warnings)
    paper = paper_table(name, tables)
    if paper is not None:
        tables["paper_vs_study"] = paper
        changes = protocol_changes(store.experiment)
        if changes is not None:
            tables["paper_protocol_changes"] = changes
    tables["skipped"] = pd.DataFrame(store.skipped, columns=["run", "reason"])
    tables["failed"] = pd.DataFrame(store.failed, columns=["run_id", "role", "T", "seed",
                                                           "error", "time"])
    analysis = Analysis(store=store, options=opts, options_source=source, tables=tables,
                        notes=notes, graph=graph, norm=norm, matrices=mats,
                        no_individual=no_individual)
    tables["summary"] = summary_table(analysis)
    analysis.findings = findings(analysis)
    tables["findings"] = records.findings_table(analysis.findings)
    analysis.key_results = key_results(analysis)
    tables["notes"] = pd.DataFrame({"note": notes}, dtype=object)
    return analysis


def analyze(results_dir: Path | str | Store, options: AnalysisConfig | None = None
            ) -> dict[str, pd.DataFrame]:
    """All tables of a study, numeric (runs, accuracy, classwise counts and detail, fairness,
    individual fairness, disagreement, trends, warnings, paper vs this study for a paper preset,
    skipped and failed runs, summary, notes).

    ``options`` defaults to the ``analysis`` section of the store's experiment.json, else
    ``AnalysisConfig()``. Accuracies, DPD, EOD and disagreement are in percent; std is over seeds
    (ddof 1); ``*_ci_low`` / ``*_ci_high`` are 95 % bootstrap CIs over seeds.
    """
    return _analyze(results_dir, options).tables


MANIFEST = "manifest.json"


def _previous_files(out: Path) -> set[str]:
    """Names the last ``kdfair report`` wrote (from its manifest), each one plain file name
    inside report/ ('..' or a path is ignored); nothing else is ever removed."""
    try:
        files = json.loads(read_text(out / MANIFEST, MAX_JSON_BYTES)).get("files", [])
        return {f for f in files if is_safe_name(f)}
    except (OSError, ValueError, AttributeError):
        return set()


STALE_S = 3600  # a temporary report directory untouched this long was left by a killed report


def _clean_stale(root: Path) -> None:
    """Remove ``.report-*`` directories a killed report left (untouched for STALE_S)."""
    now = time.time()
    for d in root.glob(".report-*"):
        try:
            if d.is_dir() and not d.is_symlink() and now - d.stat().st_mtime > STALE_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _publish(tmp: Path, out: Path) -> list[str]:
    """Move every file of ``tmp`` into ``out``, drop files of the previous report that this one
    no longer has, write the manifest last. Returns the names written."""
    out.mkdir(parents=True, exist_ok=True)
    written = sorted(p.name for p in tmp.iterdir() if p.is_file())
    for name in _previous_files(out) - set(written):
        old = out / name
        if old.is_file() or old.is_symlink():  # the link itself, never what it points to
            old.unlink(missing_ok=True)
    for name in written:
        os.replace(tmp / name, out / name)
    manifest = {"written_by": "kdfair report", "files": [*written, MANIFEST]}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    os.replace(tmp / MANIFEST, out / MANIFEST)
    return written


def write_report(results_dir: Path | str, options: AnalysisConfig | None = None) -> ReportResult:
    """Analyse the store and write ``<results>/report/``: report.md, report.html (self-contained,
    plots embedded), one CSV per table and the plots (PNG, SVG, PDF), plus manifest.json.

    Everything is written into a temporary directory first, so a failure leaves the previous
    report as it was; only files named in the previous manifest are ever replaced or removed.
    """
    try:
        analysis = _analyze(results_dir, options)
    except NoRuns as err:
        if not (err.failed or err.skipped):
            raise
        return _failure_report(err)  # every run failed: say which and why, not "run first"
    out = inside(analysis.store.root, "report")  # never written through a link
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out.parent)
    names = [f"{name}.csv" for name in analysis.tables]

    def write(tmp: Path) -> None:
        step("report: figures and the document")
        # may add notes (e.g. a failed plot)
        doc = build_document(analysis, tmp, [tmp / n for n in names])
        analysis.tables["notes"] = pd.DataFrame({"note": analysis.notes}, dtype=object)
        _write_report_files(tmp, analysis.tables, doc)

    _write_and_publish(out, write)
    return ReportResult(md_path=out / "report.md", html_path=out / "report.html",
                        csv_paths=[out / n for n in names],
                        summary=summary_display(analysis),
                        findings=[f"Warning: {w}" for w in analysis.table("warnings")["warning"]]
                        + [f.text for f in analysis.findings], records=analysis.findings,
                        key_results=analysis.key_results, manifest_path=out / MANIFEST)


def _write_report_files(tmp: Path, tables: dict[str, pd.DataFrame], doc: Document) -> None:
    """A report's CSVs (no cell runs as a spreadsheet formula), report.md and report.html."""
    for name, df in tables.items():
        csv_safe(df).to_csv(tmp / f"{name}.csv", index=False)
    (tmp / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (tmp / "report.html").write_text(doc.html(), encoding="utf-8")


def _write_and_publish(out: Path, write: Callable[[Path], None]) -> None:
    """Write a report into a new temporary directory beside ``out``, then publish it as ``out``
    (the temporary directory is removed whatever happens)."""
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out.parent))
    try:
        write(tmp)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _failure_report(err: NoRuns) -> ReportResult:
    """The report of a study none of whose runs finished: which failed or were skipped, and
    why (report.md, report.html, failed.csv, skipped.csv), published like a full report."""
    tables = {
        "failed": pd.DataFrame([{k: f.get(k) for k in ("run_id", "role", "T", "seed", "error")}
                                for f in err.failed],
                               columns=["run_id", "role", "T", "seed", "error"]),
        "skipped": pd.DataFrame(err.skipped, columns=["run_id", "reason"])}
    name = err.experiment.get("name") or err.root.name
    doc = Document(f"kdfair report — {name}")
    line = (f"No run of this study finished: {len(err.failed)} failed and {len(err.skipped)} "
            "were skipped, so there is nothing to analyse. Fix what the errors below say and "
            "run `kdfair run` again: it trains only what is missing.")
    doc.p(line)
    for key, title in (("failed", "Failed runs"), ("skipped", "Skipped runs")):
        if len(tables[key]):
            doc.h(title)
            doc.table(tables[key].astype(object).where(tables[key].notna(), "–").astype(str))
    out = inside(err.root, "report")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_and_publish(out, lambda tmp: _write_report_files(tmp, tables, doc))
    return ReportResult(md_path=out / "report.md", html_path=out / "report.html",
                        csv_paths=[out / f"{k}.csv" for k in tables], summary=pd.DataFrame(),
                        findings=[line], manifest_path=out / MANIFEST)
