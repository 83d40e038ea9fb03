"""Warnings for degenerate or suspicious runs, shown first in the report.

A model that predicts one class (or fewer than half the classes) can score perfect group
fairness; a teacher less accurate than the non-distilled student is not a teacher; a DS group
whose accuracy spread over seeds is more than 3× the NDS's mixes runs that trained differently.
A study whose distilled students never reach the NDS's accuracy, or never narrow its group
fairness gap, at moderate T does not show what the paper reports: it says so first, so that a
recipe effect is not read as a finding about distillation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdfair.analysis import measures
from kdfair.analysis.common import model_label
from kdfair.analysis.records import Finding

SPREAD_FACTOR = 3.0
MODERATE_T = 10.0  # the paper's findings are for 1 <= T <= 10


def phenomenon_warnings(accuracy: pd.DataFrame, fairness: pd.DataFrame,
                        paper: bool = True) -> list[Finding]:
    """Warnings saying which of the paper's moderate-T phenomena this study does not show:
    a DS at T <= 10 at least as accurate as the NDS (Tables 1-2), and a DS with a smaller
    DPD / EOD than the NDS (Table 2). Nothing when there is no NDS or no DS at T <= 10.

    ``paper``: the study is a preset the paper reports numbers for, so the warnings cite its
    tables; any other study (your own data, an audit) is told the same without the paper."""
    out = []
    ds = accuracy[(accuracy["role"] == "ds") & (accuracy["T"] <= MODERATE_T)]
    nds = accuracy[accuracy["role"] == "nds"]
    if ds.empty or nds.empty or not np.isfinite(nds["acc_mean"].iloc[0]):
        return out
    ref = float(nds["acc_mean"].iloc[0])
    best = ds.loc[ds["acc_mean"].idxmax()]
    if best["acc_mean"] < ref:
        apart = best.get("acc_ci_high", np.nan) < nds["acc_ci_low"].iloc[0] \
            if "acc_ci_low" in nds else False
        ci = ("its seed CI lies below the NDS's" if apart else "the seed CIs overlap") \
            if np.isfinite(best.get("acc_ci_high", np.nan)) else "no seed CI"
        what = (f"no DS at T ≤ {MODERATE_T:g} reaches the NDS's mean accuracy (best DS "
                f"T={best['T']:g} {best['acc_mean']:.2f} % vs NDS {ref:.2f} %; {ci})")
        out.append(Finding(
            "no_accuracy_gain",
            (f"Not the paper's finding: {what}; the paper reports DS above the NDS "
             "(Tables 1–2). " if paper else f"{what[0].upper()}{what[1:]}: distillation did "
             "not lift the student here. ")
            + "These results describe this recipe, not distillation in general.", "warning",
            {"model": model_label("ds", best["T"])},
            {"T": float(best["T"]), "ds_accuracy": float(best["acc_mean"]),
             "nds_accuracy": ref}))
    if fairness.empty:
        return out
    gaps, attrs = [], []
    for attr in dict.fromkeys(fairness["attribute"]):
        rows = fairness[fairness["attribute"] == attr]
        n_ref = rows[rows["role"] == "nds"]
        d = rows[(rows["role"] == "ds") & (rows["T"] <= MODERATE_T)]
        if n_ref.empty or d.empty:
            continue
        worse = [m.label for m in measures.of("group", headline_only=True)
                 if m.fairer == "lower" and m.at_a_glance
                 and (d[f"{m.column}_mean"] >= float(n_ref[f"{m.column}_mean"].iloc[0])).all()]
        if worse:
            gaps.append(f"{' and '.join(worse)} for '{attr}'")
            attrs.append(attr)
    if gaps:
        lead = ("Nor does distillation narrow" if out else "Distillation does not narrow") \
            + " group-fairness gaps here" + (" (paper: Table 2)" if paper else "")
        out.append(Finding(
            "no_fairness_gain",
            f"{lead}: every DS at T ≤ {MODERATE_T:g} has a mean at least the NDS's in "
            + "; ".join(gaps) + ".",
            "warning", {"attributes": ", ".join(attrs)}))
    return out


def run_warnings(runs: pd.DataFrame, preds: list[np.ndarray], num_classes: int,
                 accuracy: pd.DataFrame) -> list[Finding]:
    """Warnings naming each suspicious run or model (``runs`` rows aligned with ``preds``)."""
    out = []
    degenerate: dict[tuple[str, str], list[tuple[str, int, int]]] = {}  # (role, model) -> runs
    for (_, r), pred in zip(runs.iterrows(), preds, strict=True):
        used = len(np.unique(pred))
        if num_classes > 1 and (used == 1 or used < num_classes / 2):
            degenerate.setdefault((r["role"], model_label(r["role"], r["T"])), []).append(
                (r["run_id"], r["seed"], used))
    for (role, model), items in degenerate.items():
        n_model = int(sum(model_label(ro, t) == model for ro, t in zip(
            runs["role"], runs["T"], strict=True)))
        most = max(used for _, _, used in items)
        what = "only one class" if most == 1 else "fewer than half the classes"
        out.append(Finding(
            "degenerate",
            f"{model}: {len(items)} of {n_model} runs predict {what} on the test set "
            "(degenerate; their DPD/EOD can be near 0 without being fair): "
            + ", ".join(f"{rid} (seed {seed}: {used} of {num_classes})"
                        for rid, seed, used in items) + ".", "warning",
            {"role": role, "model": model, "runs": ", ".join(i[0] for i in items)},
            {"runs": len(items), "of": n_model, "most_classes_used": most}))
    mean = {role: accuracy.loc[accuracy["role"] == role, "acc_mean"] for role in
            ("teacher", "nds")}
    if len(mean["teacher"]) and len(mean["nds"]) and \
            mean["teacher"].iloc[0] < mean["nds"].iloc[0]:
        t, n = float(mean["teacher"].iloc[0]), float(mean["nds"].iloc[0])
        out.append(Finding(
            "weak_teacher",
            f"The teacher ({t:.2f} %) is less accurate than the non-distilled student "
            f"({n:.2f} %): the students distil from a weaker model; check the teacher's "
            "training recipe (teacher.train in an experiment file, teacher_train in "
            "kdfair.study: more epochs, or e.g. optimizer adam with lr 1e-3 for small models "
            "on features).", "warning", {"model": "teacher"},
            {"teacher_accuracy": t, "nds_accuracy": n}))
    nds_std = accuracy.loc[accuracy["role"] == "nds", "acc_std"]
    if len(nds_std) and np.isfinite(nds_std.iloc[0]) and nds_std.iloc[0] > 0:
        ref = float(nds_std.iloc[0])
        ds = accuracy[(accuracy["role"] == "ds") & (accuracy["acc_std"] > SPREAD_FACTOR * ref)]
        for _, r in ds.iterrows():
            out.append(Finding(
                "seed_spread",
                f"DS T={r['T']:g}: accuracy std over seeds {r['acc_std']:.2f} points is more "
                f"than {SPREAD_FACTOR:g}× the NDS's ({ref:.2f}); some seeds may have trained "
                "differently (see runs.csv).", "warning", {"model": model_label("ds", r["T"])},
                {"T": float(r["T"]), "std": float(r["acc_std"]), "nds_std": ref}))
    return out
