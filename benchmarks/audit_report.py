"""Time an audit of 12 × 300 predictions: the analysis alone (``kdfair.analyze``) and the report
(``kdfair.report``: tables, figures, report.md / report.html).

12 prediction sets (teacher, NDS and DS at T = 2 and 4, 3 seeds each) of 300 test inputs, 10
classes, one binary sensitive attribute, 32-dimensional features; the store is written by
``kdfair.audit(write_report=False)`` (not timed). Each step is timed in this process after one
warm-up (imports, matplotlib's font cache); the 1-minute load average is printed because on a
shared machine the wall time depends on it.

    python benchmarks/audit_report.py              # time both, 3 repeats
    python benchmarks/audit_report.py --profile    # plus cProfile's top functions of the report
    python benchmarks/audit_report.py --vector     # with the SVG / PDF twins of every figure

Bar (issue 23): the report in at most 5 s. Measured on the shared 2-core development machine
(load average 3–7): the report took 3.9 s of CPU with SVG / PDF twins (4.1–7 s wall), 2.1 s
PNG only, an audit's default since (3.9 s wall at load 7.5); the analysis 0.2 s.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np


def predictions(n: int = 300, classes: int = 10, seed: int = 0) -> dict:
    """Labels, groups, features and 12 sets of logits of plausible accuracy (~80 %)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    group = rng.integers(0, 2, n)

    def logits(acc: float) -> np.ndarray:
        z = rng.normal(size=(n, classes)).astype(np.float32)
        hit = rng.random(n) < acc - 0.05 * group
        z[np.arange(n), y] += np.where(hit, 4.0, 0.0)
        return z

    return {"labels": y, "teacher": [logits(0.85) for _ in range(3)],
            "nds": [logits(0.78) for _ in range(3)],
            "ds": {t: [logits(0.8) for _ in range(3)] for t in (2, 4)},
            "groups": {"sex": group}, "group_names": {"sex": ["female", "male"]},
            "features": rng.normal(size=(n, 32)).astype(np.float32)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print cProfile's top 25 of a report")
    ap.add_argument("--vector", dest="options", action="store_const",
                    const={"vector_figures": True}, help="SVG and PDF twins too (an audit's "
                    "report writes PNG only unless asked)")
    args = ap.parse_args()
    import kdfair

    with tempfile.TemporaryDirectory() as tmp:
        kdfair.audit(**predictions(), out=tmp, name="bench", write_report=False)
        root = Path(tmp) / "bench"
        kdfair.report(root, args.options)  # warm-up: imports, font cache
        times: dict[str, list[tuple[float, float]]] = {"analyze": [], "report": []}
        for _ in range(args.repeats):
            for name, step in (("analyze", kdfair.analyze), ("report", kdfair.report)):
                t0, c0 = time.perf_counter(), time.process_time()
                step(root, args.options)
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
        print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        for name, ts in times.items():
            wall, cpu = [w for w, _ in ts], [c for _, c in ts]
            print(f"{name:8s} wall best {min(wall):6.2f} s  median {float(np.median(wall)):6.2f} s"
                  f"   CPU (this process) best {min(cpu):6.2f} s")
        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(kdfair.report, root, args.options)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
