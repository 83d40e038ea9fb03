"""Scale benchmark of the analysis: an ImageNet-sized synthetic run store, analysed end to end.

Default: 1 000 classes, 50 000 test inputs, 5 seeds of teacher, NDS and 13 temperatures (75 runs,
200 MB of float32 logits each, 15 GB in all), one sensitive attribute, 16x16x3 test features.
Generating the store is not timed. The timed part runs ``write_report`` (every table, plot and
the report, with the k-NN graph computed from scratch) in a child process and reports its wall
time, CPU time and peak RSS (the child's ``resource.getrusage``); a second, warm run reuses the
cached neighbour graph. On a shared machine the wall time depends on the load, so the 1-minute
load average is printed too; CPU seconds / 2 is what 2 dedicated cores would need.

    python benchmarks/analysis_scale.py                  # generate in a temp dir, time, delete
    python benchmarks/analysis_scale.py --store DIR      # generate into DIR (kept), or reuse it
    python benchmarks/analysis_scale.py --classes 100 --n-test 5000   # a quick small version

Bars (issue): at most 60 s and 8 GiB peak memory on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.analysis_fixtures
from kdfair.store.results import upgrade_run_dir  # noqa: E402
from tests.analysis_fixtures import draw_predictions, make_spec, write_run  # noqa: E402


def generate(root: Path, classes: int, n_test: int, seeds: int, temps: int, seed: int = 0,
             logits: str = "float32") -> None:
    """Write a store with ImageNet-like accuracy (~70 %), per-class spread and planted effects."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    temperatures = [float(t) for t in range(1, temps + 1)]
    labels = rng.permutation(np.arange(n_test) % classes)
    names = [f"c{i:04d}" for i in range(classes)]
    (root / "experiment.json").write_text(json.dumps({
        "name": "toy", "dataset": {"name": "synthetic-imagenet"},
        "teacher": {"model": {"arch": "resnet50"}}, "student": {"model": {"arch": "resnet18"}},
        "distill": {"temperatures": temperatures, "alpha": 0.8, "t2_scaling": True,
                    "teacher_policy": "paired"}, "seeds": list(range(seeds))}))
    groups = ["a", "b", "c", "d"]
    (root / "data.json").write_text(json.dumps({
        "dataset": "synthetic-imagenet", "fingerprint": "fp0", "num_classes": classes,
        "class_names": names, "n_test": n_test, "attributes": {"group": groups}, "notes": []}))
    np.savez(root / "attributes.npz", index=np.arange(n_test),
             group=rng.integers(0, len(groups), n_test))
    centres = rng.normal(0, 1, (classes, 768)).astype(np.float32)
    feats = 0.5 + 0.12 * (centres[labels] + rng.normal(0, 1.2, (n_test, 768)).astype(np.float32))
    np.save(root / "test_features.npy", np.clip(feats, 0, 1).astype(np.float32))
    del feats
    base = rng.uniform(0.5, 0.9, classes)
    planted = rng.choice(classes, classes // 20, replace=False)  # 5 % of classes move with T
    noise = rng.standard_normal((n_test, classes), dtype=np.float32)
    buf = np.empty_like(noise)
    teacher_ids: dict[int, str] = {}
    plan = [("teacher", None, s) for s in range(seeds)] + [("nds", None, s) for s in range(seeds)]
    plan += [("ds", t, s) for t in temperatures for s in range(seeds)]
    for i, (role, t, s) in enumerate(plan):
        acc = np.clip(base + {"teacher": 0.08, "nds": 0.0}.get(role, 0.01), 0, 1)
        if role == "ds":
            acc[planted] = np.clip(acc[planted] + 0.02 * t, 0, 1)
        acc = np.clip(acc + rng.normal(0, 0.01, classes), 0, 1)  # seed-to-seed spread
        pred = draw_predictions(labels, classes, acc, rng)
        shift = (7 * i + 1) % classes  # cheap per-run noise: a rotated copy of one matrix
        buf[:, :classes - shift], buf[:, classes - shift:] = noise[:, shift:], noise[:, :shift]
        buf[np.arange(n_test), pred] += rng.uniform(3.0, 9.0, n_test).astype(np.float32)
        spec = make_spec(role, s, t, teacher_run_id=teacher_ids.get(s) if role == "ds" else None)
        if role == "teacher":
            teacher_ids[s] = spec["run_id"]
        d = write_run(root, spec, buf, labels)
        if logits != "npz":  # the store's current format (write_run writes the previous one)
            upgrade_run_dir(d, logits)


CHILD = """
import json, resource, sys
from kdfair.analysis.report import write_report
r = write_report(sys.argv[1])
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rows": len(r.summary), "findings": r.findings,
                  "peak_gib": u.ru_maxrss / 2**20, "cpu_s": u.ru_utime + u.ru_stime}))
"""


def timed_report(store: Path) -> dict:
    """Wall seconds, CPU seconds and peak RSS (GiB) of write_report(store) in a fresh process
    (the child's own ``getrusage``: all its threads, imports included)."""
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(store)], check=True,
                         capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    res["load_before"] = load
    return res


def _line(name: str, r: dict) -> str:
    return (f"{name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS "
            f"{r['peak_gib']:.2f} GiB (1-min load average before: {r['load_before']})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, help="store directory (generated if missing; kept)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=50_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--temperatures", type=int, default=13)
    ap.add_argument("--logits", choices=("float32", "float16", "npz"), default="float32",
                    help="how runs store logits (npz: the previous release's predictions.npz)")
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--max-gib", type=float, default=8.0)
    args = ap.parse_args()
    tmp = None
    store = args.store
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="kdfair-scale-"))
        store = tmp / "store"
    try:
        if not (store / "runs").exists():
            need = 4 * args.classes * args.n_test * args.seeds * (args.temperatures + 2) / 1e9
            free = shutil.disk_usage(store.parent if store.parent.exists() else Path.cwd()).free
            print(f"generating {args.seeds * (args.temperatures + 2)} runs "
                  f"({need:.1f} GB of logits; {free / 1e9:.0f} GB free) in {store} ...")
            if need * 1e9 > 0.9 * free:
                print("not enough disk space")
                return 2
            t0 = time.perf_counter()
            generate(store, args.classes, args.n_test, args.seeds, args.temperatures,
                     logits=args.logits)
            print(f"generated in {time.perf_counter() - t0:.0f} s (not part of the timing)")
        shutil.rmtree(store / "analysis_cache", ignore_errors=True)
        shutil.rmtree(store / "report", ignore_errors=True)
        cold = timed_report(store)
        print("\n".join(cold["findings"][:3]))
        warm = timed_report(store)
        print(_line("analysis + report, cold (k-NN graph computed)", cold))
        print(_line("analysis + report, warm (graph cached)       ", warm))
        ok = cold["wall_s"] <= args.max_seconds and cold["peak_gib"] <= args.max_gib
        print(f"bars: <= {args.max_seconds:g} s and <= {args.max_gib:g} GiB: "
              f"{'met' if ok else 'NOT met'} (CPU s / 2 cores: {cold['cpu_s'] / 2:.1f} s)")
        return 0 if ok else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
