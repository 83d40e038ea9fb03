"""Warnings for degenerate or suspicious runs, shown first in the report.

A model that predicts one class (or fewer than half the classes) can score perfect group
fairness; a teacher less accurate than the non-distilled student is not a teacher; a DS group
whose accuracy spread over seeds is more than 3× the NDS's mixes runs that trained differently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdfair.analysis.common import model_label

SPREAD_FACTOR = 3.0


def run_warnings(runs: pd.DataFrame, preds: list[np.ndarray], num_classes: int,
                 accuracy: pd.DataFrame) -> list[str]:
    """Sentences naming each suspicious run or model (``runs`` rows aligned with ``preds``)."""
    out = []
    degenerate: dict[str, list[str]] = {}  # model -> "run (k of C classes)"
    for (_, r), pred in zip(runs.iterrows(), preds, strict=True):
        used = len(np.unique(pred))
        if num_classes > 1 and (used == 1 or used < num_classes / 2):
            degenerate.setdefault(model_label(r["role"], r["T"]), []).append(
                f"{r['run_id']} (seed {r['seed']}: {used} of {num_classes})")
    for model, items in degenerate.items():
        n_model = int(sum(model_label(ro, t) == model for ro, t in zip(
            runs["role"], runs["T"], strict=True)))
        what = "only one class" if all(": 1 of" in i for i in items) else \
            "fewer than half the classes"
        out.append(f"{model}: {len(items)} of {n_model} runs predict {what} on the test set "
                   f"(degenerate; their DPD/EOD can be near 0 without being fair): "
                   + ", ".join(items) + ".")
    mean = {role: accuracy.loc[accuracy["role"] == role, "acc_mean"] for role in
            ("teacher", "nds")}
    if len(mean["teacher"]) and len(mean["nds"]) and \
            mean["teacher"].iloc[0] < mean["nds"].iloc[0]:
        out.append(f"The teacher ({mean['teacher'].iloc[0]:.2f} %) is less accurate than the "
                   f"non-distilled student ({mean['nds'].iloc[0]:.2f} %): the students distil "
                   "from a weaker model; check the teacher's training recipe.")
    nds_std = accuracy.loc[accuracy["role"] == "nds", "acc_std"]
    if len(nds_std) and np.isfinite(nds_std.iloc[0]) and nds_std.iloc[0] > 0:
        ref = float(nds_std.iloc[0])
        ds = accuracy[(accuracy["role"] == "ds") & (accuracy["acc_std"] > SPREAD_FACTOR * ref)]
        for _, r in ds.iterrows():
            out.append(f"DS T={r['T']:g}: accuracy std over seeds {r['acc_std']:.2f} points is "
                       f"more than {SPREAD_FACTOR:g}× the NDS's ({ref:.2f}); some seeds may "
                       "have trained differently (see runs.csv).")
    return out
