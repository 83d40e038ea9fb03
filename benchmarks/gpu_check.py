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
import math
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
from kdfair.train.device import engine_mode
from kdfair.train.engine import RunJob, Silent, build_run_model, train_group

HERE = Path(__file__).resolve().parent
# Training is chaotic: a difference of one rounding grows step by step (measured on a CPU with
# ResNet-20, 2 epochs: a member of a grouped bank and the run alone differ by up to 0.36 in a
# logit; the run alone and the same run with its initial weights moved by one float32 ulp differ
# by up to 0.50). So: after ONE step the logits must agree to ONE_STEP_ATOL (fp32); after the
# whole run, grouped vs alone must differ no more than the chaos of the run alone — the larger of
# (the run alone twice) and (the run alone vs the run alone with its initial weights one ulp up,
# or down) — plus a stated margin, in test predictions that disagree and in test accuracy.
ONE_STEP_ATOL = 1e-4
BF16_ONE_STEP_ULPS = 4  # bf16 after one step: within 4 bf16 ulps at the largest logit
MARGIN_DISAGREE = 0.02  # grouped vs alone: at most 2 % more test predictions differ …
MARGIN_ACC = 0.02  # … and test accuracy at most 2 points further apart than chaos gives


def toy(n: int, seed: int, px: int = 32, classes: int = 10) -> Part:
    """uint8 images [n, 3, px, px] whose class is a bright band."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (rng.random((n, 3, px, px)) * 60).astype(np.uint8)
    width = max(1, px // (classes + 1))
    for c in range(classes):
        x[y == c, c % 3, width * c : width * (c + 1), :] = 250
    return Part(y=torch.as_tensor(y), x=torch.as_tensor(x))


def toy_data(n_train: int, px: int) -> SplitData:
    return SplitData(name="toy", num_classes=10, class_names=[str(i) for i in range(10)],
                     fingerprint="toy", train=toy(n_train, 0, px), val=toy(64, 1, px),
                     test=toy(512, 2, px))


def _spec(role: str, seed: int, t: float | None = None, arch: str = "resnet20",
          epochs: int = 2) -> RunSpec:
    train = {"epochs": epochs, "batch_size": 64, "lr": 0.05, "augment": "crop_flip"}
    kw = dict(temperature=t, alpha=0.8, t2_scaling=True) if role == "ds" else {}
    return RunSpec(experiment="gpu-check", role=role, arch=arch, seed=seed, train=train,
                   dataset={}, data_fingerprint="toy", **kw)


def _train(device: torch.device, data: SplitData, jobs: list[RunJob], **kw) -> list:
    parts = {k: Batches(getattr(data, k), data, device) for k in ("train", "val", "test")}
    with engine_mode(device, kw.get("precision", "auto")):  # fp32: no TF32 either
        out = train_group(jobs, data, device, parts, Silent(), {}, **kw)
    bad = [r for r in out if isinstance(r, Exception)]
    if bad:
        raise RuntimeError(f"a run failed: {bad[0]}")
    return out


def _gap(a, b) -> dict:
    """How far two results of the same run are apart on the test set."""
    return {"max_abs_logit_diff": float(np.abs(a.logits - b.logits).max()),
            "disagree": float((a.logits.argmax(1) != b.logits.argmax(1)).mean()),
            "acc_gap": abs(a.metrics["test_acc"] - b.metrics["test_acc"])}


def nudged(job: RunJob, data: SplitData, direction: float) -> RunJob:
    """The same run with every initial weight moved by one float32 ulp (up or down): a rounding
    difference at step 0, to measure how far training alone carries one."""
    model = build_run_model(job.spec, data)
    state = {k: torch.nextafter(v, torch.full_like(v, direction * math.inf))
             if v.is_floating_point() else v for k, v in model.state_dict().items()}
    return RunJob(job.spec, teacher=job.teacher, init_weights=state)


def within_chaos(jobs: list[RunJob], tested: list, alone: list, again: list,
                 nudges: list[list]) -> list[dict]:
    """Per member: the tested result vs the run alone, against the chaos baseline (the run
    alone twice, and alone vs alone nudged by one ulp); ok when the tested gap exceeds the
    baseline by no more than the margins."""
    rows = []
    for m, job in enumerate(jobs):
        gap = _gap(tested[m], alone[m])
        base = [_gap(again[m], alone[m])] + [_gap(n[m], alone[m]) for n in nudges]
        chaos = {k: max(b[k] for b in base) for k in gap}
        ok = (gap["disagree"] <= chaos["disagree"] + MARGIN_DISAGREE
              and gap["acc_gap"] <= chaos["acc_gap"] + MARGIN_ACC)
        rows.append({"run": job.spec.prefix, "test_acc": alone[m].metrics["test_acc"],
                     **gap, "alone_twice": base[0], "chaos": chaos, "ok": bool(ok)})
    return rows


def _one_step_ok(precision: str, diff: float, alone) -> bool:
    if precision == "fp32":
        return diff <= ONE_STEP_ATOL
    top = float(np.abs(alone.logits).max())
    ulp = 2.0 ** (math.floor(math.log2(max(top, 1e-30))) - 7)
    return diff <= BF16_ONE_STEP_ULPS * ulp


def invariance(device: torch.device, arch: str = "resnet20", teacher_arch: str = "resnet32",
               px: int = 32, n_train: int = 1024, epochs: int = 2,
               precisions: tuple[str, ...] = ("fp32", "bf16"), compile: bool = True) -> dict:
    """Each member of a grouped bank (two NDS, two DS of a trained teacher, two seeds) vs the
    same run alone: after one step, and after the whole run against the chaos of the run alone
    (``within_chaos``); per precision; and a ``torch.compile``d bank against the eager one."""
    data = toy_data(n_train, px)
    one_batch = SplitData(name="toy", num_classes=10, class_names=data.class_names,
                          fingerprint="toy", train=toy(64, 0, px), val=data.val, test=data.test)
    (t_res,) = _train(device, data, [RunJob(_spec("teacher", 0, arch=teacher_arch,
                                                  epochs=epochs))], precision="fp32")
    teacher = t_res.model.to(device).eval().requires_grad_(False)

    def group(e: int) -> list[RunJob]:
        return [RunJob(_spec("nds", 1, arch=arch, epochs=e)),
                RunJob(_spec("ds", 1, 4.0, arch=arch, epochs=e), teacher=teacher),
                RunJob(_spec("ds", 2, 8.0, arch=arch, epochs=e), teacher=teacher),
                RunJob(_spec("nds", 2, arch=arch, epochs=e))]

    out: dict = {"setup": {"arch": arch, "teacher": teacher_arch, "px": px, "n_train": n_train,
                           "epochs": epochs, "teacher_test_acc": t_res.metrics["test_acc"]}}
    for precision in precisions:
        jobs = group(1)
        banked = _train(device, one_batch, jobs, bank_kind="grouped", precision=precision)
        rows = []
        for job, res in zip(jobs, banked, strict=True):
            (alone,) = _train(device, one_batch, [job], precision=precision)
            diff = float(np.abs(res.logits - alone.logits).max())
            rows.append({"run": job.spec.prefix, "max_abs_logit_diff": diff,
                         "ok": _one_step_ok(precision, diff, alone)})
        out[f"{precision}_one_step"] = rows
        jobs = group(epochs)
        grouped = _train(device, data, jobs, bank_kind="grouped", precision=precision)
        alone = [_train(device, data, [j], precision=precision)[0] for j in jobs]
        again = [_train(device, data, [j], precision=precision)[0] for j in jobs]
        nudges = [[_train(device, data, [nudged(j, data, d)], precision=precision)[0]
                   for j in jobs] for d in (1.0, -1.0)]
        out[precision] = within_chaos(jobs, grouped, alone, again, nudges)
        if compile and precision == "fp32":
            compiled = _train(device, data, jobs, compile=True, bank_kind="grouped",
                              precision=precision)
            out["compile"] = within_chaos(jobs, compiled, alone, again, nudges)
    out["tolerances"] = {"one_step_atol_fp32": ONE_STEP_ATOL,
                         "one_step_bf16_ulps": BF16_ONE_STEP_ULPS,
                         "margin_disagree": MARGIN_DISAGREE, "margin_acc": MARGIN_ACC}
    out["ok"] = all(r["ok"] for k, v in out.items() if isinstance(v, list) for r in v)
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
