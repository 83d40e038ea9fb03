"""One-command GPU check: what the development machines (no GPU) cannot test, in at most 8 minutes.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--skip-throughput] [--skip-study]

1. **Bundle invariance on CUDA**: a bank of grouped convolutions (NDS + DS members, two seeds)
   against each member trained alone, in fp32 (TF32 off) to the CPU test's tolerance, and in bf16
   autocast to a stated, looser one; also a ``torch.compile``d bank against the eager one.
2. **Throughput**: ``benchmarks/throughput.py`` on the paper's CIFAR-100 grid (70 students) and
   its ratio against the reference loop measured in the same run.
3. **End to end**: the Trifeature paper preset (13 temperatures × 5 seeds) with every role cut
   to ``--epochs`` epochs, through ``kdfair.run`` including the report; its wall time.

Everything is written to one JSON file; the exit status is 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from kdfair.data.base import Part, SplitData
from kdfair.spec import RunSpec
from kdfair.train.batches import Batches
from kdfair.train.engine import RunJob, Silent, build_run_model, train_group

HERE = Path(__file__).resolve().parent
FP32_ATOL = 2e-4  # logits after 2 epochs: the CPU test's tolerance (tests/test_grouped.py)
BF16_MAX_ACC_GAP = 0.05  # bf16 bank member vs the bf16 run alone: test accuracy within 5 points
BF16_MIN_CORR = 0.98  # … and logits correlated above this


def _toy(n: int, seed: int, classes: int = 10) -> Part:
    """uint8 images [n, 3, 32, 32] whose class is a bright band."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (rng.random((n, 3, 32, 32)) * 60).astype(np.uint8)
    for c in range(classes):
        x[y == c, c % 3, 3 * c : 3 * c + 3, :] = 250
    return Part(y=torch.as_tensor(y), x=torch.as_tensor(x))


def _spec(role: str, seed: int, t: float | None = None, arch: str = "resnet20") -> RunSpec:
    train = {"epochs": 2, "batch_size": 64, "lr": 0.05, "augment": "crop_flip"}
    kw = dict(temperature=t, alpha=0.8, t2_scaling=True) if role == "ds" else {}
    return RunSpec(experiment="gpu-check", role=role, arch=arch, seed=seed, train=train,
                   dataset={}, data_fingerprint="toy", **kw)


def invariance(device: torch.device) -> dict:
    """Each member of a grouped bank vs the same run alone, fp32 and bf16, eager and compiled."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    data = SplitData(name="toy", num_classes=10, class_names=[str(i) for i in range(10)],
                     fingerprint="toy", train=_toy(1024, 0), val=_toy(128, 1), test=_toy(512, 2))
    parts = {k: Batches(getattr(data, k), data, device) for k in ("train", "val", "test")}
    t_spec = _spec("teacher", 0, arch="resnet32")
    teacher = build_run_model(t_spec, data).to(device).eval().requires_grad_(False)
    jobs = [RunJob(_spec("nds", 1)), RunJob(_spec("ds", 1, 4.0), teacher=teacher),
            RunJob(_spec("ds", 2, 8.0), teacher=teacher), RunJob(_spec("nds", 2))]
    out: dict = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        banked = train_group(jobs, data, device, parts, Silent(), {}, bank_kind="grouped",
                             bf16=bf16)
        rows = []
        for job, res in zip(jobs, banked, strict=True):
            (alone,) = train_group([job], data, device, parts, Silent(), {}, bf16=bf16)
            diff = float(np.abs(res.logits - alone.logits).max())
            corr = float(np.corrcoef(res.logits.ravel(), alone.logits.ravel())[0, 1])
            gap = abs(res.metrics["test_acc"] - alone.metrics["test_acc"])
            ok = diff <= FP32_ATOL if precision == "fp32" else (
                gap <= BF16_MAX_ACC_GAP and corr >= BF16_MIN_CORR)
            rows.append({"run": job.spec.prefix, "max_abs_logit_diff": diff, "corr": corr,
                         "test_acc_gap": gap, "ok": ok})
        out[precision] = rows
    eager = train_group(jobs, data, device, parts, Silent(), {}, bank_kind="grouped", bf16=False)
    compiled = train_group(jobs, data, device, parts, Silent(), {}, compile=True,
                           bank_kind="grouped", bf16=False)
    out["compile"] = [{"run": j.spec.prefix,
                       "max_abs_logit_diff": float(np.abs(a.logits - b.logits).max()),
                       "ok": bool(np.abs(a.logits - b.logits).max() <= FP32_ATOL * 10)}
                      for j, a, b in zip(jobs, eager, compiled, strict=True)]
    out["tolerances"] = {"fp32_atol": FP32_ATOL, "bf16_max_acc_gap": BF16_MAX_ACC_GAP,
                         "bf16_min_corr": BF16_MIN_CORR, "compile_atol": FP32_ATOL * 10}
    out["ok"] = all(r["ok"] for k in ("fp32", "bf16", "compile") for r in out[k])
    return out


def throughput(timeout_s: int) -> dict:
    """benchmarks/throughput.py on the paper grid; its printed figures and ratio."""
    cmd = [sys.executable, str(HERE / "throughput.py"), "--grid", "paper", "--device", "cuda"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    found = re.search(r"ratio: ([0-9.]+)", r.stdout)
    return {"command": " ".join(cmd), "returncode": r.returncode, "stdout": r.stdout,
            "stderr": r.stderr[-2000:], "ratio": float(found.group(1)) if found else None,
            "ok": r.returncode == 0 and found is not None}


def study(epochs: int) -> dict:
    """The Trifeature paper preset, every role cut to ``epochs`` epochs, end to end."""
    from kdfair import api
    from kdfair.config import experiment_from_dict, load_experiment

    exp = load_experiment("trifeature-r20-lenet5").model_dump(mode="json")
    for role in ("teacher", "student"):
        exp[role]["train"]["epochs"] = epochs
    exp.update(name="gpu-check-trifeature", device="cuda")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        st = api.run(experiment_from_dict(exp, "(gpu check)"), out=tmp)
        wall = time.perf_counter() - t0
        report = (Path(tmp) / exp["name"] / "report" / "report.md").exists()
    return {"epochs": epochs, "wall_s": wall, "done": len(st.done), "failed": len(st.failed),
            "missing": len(st.missing), "report_written": report,
            "ok": not st.failed and not st.missing and report}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--epochs", type=int, default=3, help="epochs per role in the preset study")
    ap.add_argument("--throughput-timeout", type=int, default=240)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-study", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: this check is for a machine with one", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    result: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    checks = [("invariance", lambda: invariance(device))]
    if not args.skip_throughput:
        checks.append(("throughput", lambda: throughput(args.throughput_timeout)))
    if not args.skip_study:
        checks.append(("study", lambda: study(args.epochs)))
    for name, check in checks:
        t0 = time.perf_counter()
        try:
            result[name] = check()
        except Exception as err:  # noqa: BLE001 - record it, run the other checks
            result[name] = {"ok": False, "error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc()[-4000:]}
        result[name]["seconds"] = time.perf_counter() - t0
        print(f"{name}: {'ok' if result[name]['ok'] else 'FAILED'} "
              f"({result[name]['seconds']:.0f} s)", flush=True)
    result["ok"] = all(result[n]["ok"] for n, _ in checks)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}; {'all checks passed' if result['ok'] else 'some checks FAILED'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
