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
    for (_, r), pred in zip(runs.iterrows(), preds, strict=True):
        used = len(np.unique(pred))
        if num_classes > 1 and (used == 1 or used < num_classes / 2):
            what = "only one class" if used == 1 else f"only {used} of {num_classes} classes"
            out.append(f"Run {r['run_id']} ({model_label(r['role'], r['T'])}, seed "
                       f"{r['seed']}) predicts {what} on the test set: a degenerate model; its "
                       "DPD/EOD can be near 0 without being fair.")
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
