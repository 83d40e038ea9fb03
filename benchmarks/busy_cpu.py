"""The demo's wall time on an idle CPU and beside one CPU-bound process, and their ratio.

    python benchmarks/busy_cpu.py                      # the demo preset, as `kdfair run demo`
    python benchmarks/busy_cpu.py --set seeds=[0] --set teacher.train.epochs=1 \\
        --set student.train.epochs=1 --set distill.temperatures=[2]   # a quick smoke run

Each timing is ``kdfair run <preset> --no-report`` in a fresh results directory (the plan and
every run, not the report), through the command line as a user runs it, after one untimed
``kdfair plan`` that generates (and caches) the data set, with the experiment's own engine
settings (the default: one training process per core,
one thread each). "Busy" runs it while one other process spins a core (a pure-Python loop, as a
second user's job would). The goal (issue 21): busy at most 2x idle — a study should lose the
share of the cores the other process takes, not stall as threads waiting on each other do.

Run it on an otherwise quiet machine: whatever else runs counts as load in both timings.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPIN = "while True:\n    sum(i * i for i in range(100_000))\n"


def kdfair_cmd() -> list[str]:
    """The kdfair command line of this interpreter's environment."""
    exe = Path(sys.executable).with_name("kdfair")
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from kdfair.cli import app; app()"]


def timed_run(preset: str, sets: list[str], command: str = "run") -> float:
    """Wall seconds of ``kdfair run <preset> --no-report`` (or ``kdfair plan``) into a fresh
    directory."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [*kdfair_cmd(), command, preset, "--out", out]
        cmd += ["--no-report"] if command == "run" else []
        for s in sets:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}"
                         f"\n{r.stderr[-2000:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", nargs="?", default="demo")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="an override passed to kdfair run, e.g. seeds=[0]")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    timed_run(args.preset, args.sets, "plan")  # the data set, generated and cached
    idle = timed_run(args.preset, args.sets)
    print(f"idle: {idle:.1f} s", flush=True)
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        busy = timed_run(args.preset, args.sets)
    finally:
        spinner.send_signal(signal.SIGTERM)
        spinner.wait()
    ratio = busy / idle
    print(f"beside one CPU-bound process: {busy:.1f} s")
    print(f"ratio: {ratio:.2f} (goal: at most 2.00)")
    figures = {"preset": args.preset, "overrides": args.sets, "cores": os.cpu_count(),
               "idle_s": idle, "busy_s": busy, "ratio": ratio, "ok": ratio <= 2.0}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
