"""The per-T DS-vs-NDS table of docs/replication.md from two (or more) reports' CSVs.

    python scripts/replication_tables.py RESULTS_A/report RESULTS_B/report

For each quantity (accuracy, EOD and DPD for colour, counterfactual flip rate for colour) and T:
DS(T) − NDS seed means with [Welch p | paired p] per report and pooled over all of them
(Welch: scipy.stats.ttest_ind(equal_var=False); paired: seed k's DS against seed k's NDS,
scipy.stats.ttest_rel). Reads runs.csv, fairness_runs.csv, counterfactual_runs.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from scipy import stats

ATTRIBUTE = "colour"
TEMPERATURES = (1, 2, 3, 4, 5, 7, 10, 20, 40)


def per_run(report: Path) -> pd.DataFrame:
    runs = pd.read_csv(report / "runs.csv")
    fair = pd.read_csv(report / "fairness_runs.csv")
    cf = pd.read_csv(report / "counterfactual_runs.csv")
    fair, cf = fair[fair["attribute"] == ATTRIBUTE], cf[cf["attribute"] == ATTRIBUTE]
    return (runs.merge(fair[["run_id", "dpd", "eod"]], on="run_id")
            .merge(cf[["run_id", "cf_flip"]], on="run_id"))


def cell(t: pd.DataFrame, quantity: str, temperature: float) -> str:
    nds = t[t["role"] == "nds"].set_index("seed")[quantity]
    ds = t[(t["role"] == "ds") & (t["T"] == temperature)].set_index("seed")[quantity]
    welch = stats.ttest_ind(ds, nds, equal_var=False).pvalue
    paired = stats.ttest_rel(ds.loc[nds.index], nds).pvalue
    return f"{ds.mean() - nds.mean():+.2f} [{welch:.3f} | {paired:.3f}]"


def main(reports: list[str]) -> None:
    # named by the directory above the study (e.g. main/, confirm/), numbered to stay distinct
    tables = {f"{i + 1}:{Path(r).resolve().parent.parent.name}": per_run(Path(r))
              for i, r in enumerate(reports)}
    tables["pooled"] = pd.concat(tables.values())
    for quantity in ("accuracy", "eod", "dpd", "cf_flip"):
        print(f"\n{quantity}: DS(T) − NDS [Welch p | paired p]")
        rows = [{"T": t, **{name: cell(tab, quantity, t) for name, tab in tables.items()}}
                for t in TEMPERATURES]
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
