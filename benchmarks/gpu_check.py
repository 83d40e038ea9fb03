"""One-command GPU check: what the development machines (no GPU) cannot test, in at most 8 minutes.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--skip-throughput] [--skip-study]

1. **Bundle invariance on CUDA**: a bank of grouped convolutions (NDS + DS members, two seeds)
   against each member trained alone: in fp32 (TF32 off) equal after one step and closely
   correlated with the same accuracy after two epochs; in bf16 autocast within a stated, looser
   tolerance; also a ``torch.compile``d bank against the eager one.
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
# Grouped and plain convolutions round differently, and training amplifies the difference step
# by step (measured on a CPU with this script's ResNet-20, 2 epochs: up to 0.47 in a logit, with
# correlation 0.99999). So: after ONE step the logits must agree to ONE_STEP_ATOL; after the
# whole run, closely correlated with the same accuracy.
ONE_STEP_ATOL = 1e-4
FP32_MIN_CORR, FP32_MAX_ACC_GAP = 0.9999, 0.01
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


def _spec(role: str, seed: int, t: float | None = None, arch: str = "resnet20",
          epochs: int = 2) -> RunSpec:
    train = {"epochs": epochs, "batch_size": 64, "lr": 0.05, "augment": "crop_flip"}
    kw = dict(temperature=t, alpha=0.8, t2_scaling=True) if role == "ds" else {}
    return RunSpec(experiment="gpu-check", role=role, arch=arch, seed=seed, train=train,
                   dataset={}, data_fingerprint="toy", **kw)


def _compare(jobs, banked, alone_of, check) -> list[dict]:
    rows = []
    for job, res in zip(jobs, banked, strict=True):
        alone = alone_of(job)
        diff = float(np.abs(res.logits - alone.logits).max())
        corr = float(np.corrcoef(res.logits.ravel(), alone.logits.ravel())[0, 1])
        gap = abs(res.metrics["test_acc"] - alone.metrics["test_acc"])
        rows.append({"run": job.spec.prefix, "max_abs_logit_diff": diff, "corr": corr,
                     "test_acc_gap": gap, "ok": bool(check(diff, corr, gap))})
    return rows


def invariance(device: torch.device) -> dict:
    """Each member of a grouped bank vs the same run alone: after one step (fp32), after the
    whole run (fp32 and bf16), and a ``torch.compile``d bank against the eager one."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    data = SplitData(name="toy", num_classes=10, class_names=[str(i) for i in range(10)],
                     fingerprint="toy", train=_toy(1024, 0), val=_toy(128, 1), test=_toy(512, 2))
    one_batch = SplitData(name="toy", num_classes=10, class_names=data.class_names,
                          fingerprint="toy", train=_toy(64, 0), val=_toy(128, 1),
                          test=_toy(512, 2))
    t_spec = _spec("teacher", 0, arch="resnet32")
    teacher = build_run_model(t_spec, data).to(device).eval().requires_grad_(False)

    def group(epochs: int) -> list[RunJob]:
        return [RunJob(_spec("nds", 1, epochs=epochs)),
                RunJob(_spec("ds", 1, 4.0, epochs=epochs), teacher=teacher),
                RunJob(_spec("ds", 2, 8.0, epochs=epochs), teacher=teacher),
                RunJob(_spec("nds", 2, epochs=epochs))]

    def train(d, jobs, **kw):
        parts = {k: Batches(getattr(d, k), d, device) for k in ("train", "val", "test")}
        return train_group(jobs, d, device, parts, Silent(), {}, **kw)

    out: dict = {}
    jobs = group(1)
    out["fp32_one_step"] = _compare(
        jobs, train(one_batch, jobs, bank_kind="grouped", precision="fp32"),
        lambda j: train(one_batch, [j], precision="fp32")[0],
        lambda diff, corr, gap: diff <= ONE_STEP_ATOL)
    jobs = group(2)
    for precision, check in (
            ("fp32", lambda d, c, g: c >= FP32_MIN_CORR and g <= FP32_MAX_ACC_GAP),
            ("bf16", lambda d, c, g: c >= BF16_MIN_CORR and g <= BF16_MAX_ACC_GAP)):
        out[precision] = _compare(
            jobs, train(data, jobs, bank_kind="grouped", precision=precision),
            lambda j, p=precision: train(data, [j], precision=p)[0], check)
    eager = train(data, jobs, bank_kind="grouped", precision="fp32")
    compiled = train(data, jobs, compile=True, bank_kind="grouped", precision="fp32")
    out["compile"] = _compare(jobs, compiled, lambda j: eager[jobs.index(j)],
                              lambda d, c, g: c >= FP32_MIN_CORR and g <= FP32_MAX_ACC_GAP)
    out["tolerances"] = {"one_step_atol": ONE_STEP_ATOL, "fp32_min_corr": FP32_MIN_CORR,
                         "fp32_max_acc_gap": FP32_MAX_ACC_GAP, "bf16_min_corr": BF16_MIN_CORR,
                         "bf16_max_acc_gap": BF16_MAX_ACC_GAP}
    out["ok"] = all(r["ok"] for k in ("fp32_one_step", "fp32", "bf16", "compile")
                    for r in out[k])
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
