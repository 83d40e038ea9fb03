"""Student-images/s: a standard KD loop against kdfair's grouped engine, in one process.

Reference (written plainly, RepDistiller / torchdistill style): a DataLoader with CPU transforms
(random crop with 4-pixel padding, horizontal flip, normalise), fp32, batch 64, a live ResNet-56
teacher and one ResNet-20 student. kdfair: the paper's CIFAR-100 grid — 13 temperatures × 5 seeds
of distilled students + 5 NDS = 70 ResNet-20 students, per-student batch 128, paired ResNet-56
teachers — through ``train_bundle``; on a CPU the paper's temperatures with 2 seeds (28 students).
Data: random uint8 images of CIFAR-100 shape. Both are timed on the same device in the same run;
the ratio is what this benchmark reports.

    python benchmarks/throughput.py                 # the paper's grid (meant for a GPU)
    python benchmarks/throughput.py --grid small    # a grid that fits 2 CPU cores
    python benchmarks/throughput.py --methods       # + each method's cost relative to kd
    python benchmarks/throughput.py --profile p.json  # + where the engine's time goes
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

from kdfair.data.base import Part, SplitData
from kdfair.models.registry import build_model
from kdfair.spec import RunSpec
from kdfair.train.device import resolve_device
from kdfair.train.engine import RunJob, build_run_model, train_bundle
from kdfair.train.loss import kd_loss

MEAN, STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
PAPER_T = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40)
GRIDS = {  # temperatures, seeds, per-student batch, train images per epoch
    "paper": (PAPER_T, (0, 1, 2, 3, 4), 128, 128 * 30),  # 70 students
    "small": (PAPER_T, (0, 1), 64, 64 * 4),  # 28 students: fits 2 CPU cores in a few minutes
}


class _CifarLike(torch.utils.data.Dataset):
    """uint8 images transformed per sample on the CPU, as a torchvision pipeline would."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.t = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                             v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.t(self.x[i]), self.y[i]


def reference(device: torch.device, x: torch.Tensor, y: torch.Tensor, steps: int,
              workers: int) -> float:
    """Student-images/s of the standard loop: one student, live teacher, batch 64, fp32."""
    teacher = build_model("resnet56", 100, (3, 32, 32)).to(device).eval()
    student = build_model("resnet20", 100, (3, 32, 32)).to(device)
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(_CifarLike(x, y), batch_size=64, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)
    warm, done, t0 = 5, 0, 0.0
    while done < steps + warm:
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with torch.no_grad():
                t_logits = teacher(xb)
            loss = kd_loss(student(xb), t_logits, yb, 4.0, 0.8, True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == warm:
                _sync(device)
                t0 = time.perf_counter()
            if done == steps + warm:
                break
    _sync(device)
    return steps * 64 / (time.perf_counter() - t0)


METHOD_OPTIONS = {"kd": {}, "dkd": {"beta": 8.0}, "lskd": {},
                  # hint weight 1e-3 (not the default 100): on random images the hint of a random
                  # teacher's features diverges at this lr; the cost is what is measured
                  "fitnet": {"student_layer": "blocks", "teacher_layer": "blocks",
                             "weight": 1e-3}}


def kdfair_engine(device: torch.device, x: torch.Tensor, y: torch.Tensor, grid: str,
                  compile: bool, method: str = "kd", nds: bool = True, epochs: int = 2,
                  steps: int | None = None) -> tuple[float, int]:
    """Student-images/s of kdfair's grouped engine on the grid (last epoch: the second, after
    warm-up); ``steps``: steps per epoch instead of the grid's."""
    temps, seeds, batch, n = GRIDS[grid]
    n = n if steps is None else batch * steps
    part = Part(y=y[:n], x=x[:n])
    data = SplitData(name="bench", train=part, val=Part(y=y[:256], x=x[:256]),
                     test=Part(y=y[:256], x=x[:256]), num_classes=100,
                     class_names=[str(i) for i in range(100)], fingerprint="bench",
                     mean=MEAN, std=STD)
    train = {"epochs": epochs, "batch_size": batch, "lr": 0.05, "augment": "crop_flip"}
    common = dict(experiment="bench", train=train, dataset={}, data_fingerprint="bench")
    teachers, t_specs = {}, {}
    for s in seeds:
        t_specs[s] = RunSpec(role="teacher", arch="resnet56", seed=s, **common)
        t = build_run_model(t_specs[s], data).to(device).eval()
        if device.type == "cuda":
            t.to(memory_format=torch.channels_last)
        teachers[s] = t.requires_grad_(False)
    jobs = [RunJob(RunSpec(role="nds", arch="resnet20", seed=s, **common))
            for s in seeds] if nds else []
    method_kw = {} if method == "kd" else {"method": method,
                                            "method_options": METHOD_OPTIONS[method]}
    jobs += [RunJob(RunSpec(role="ds", arch="resnet20", seed=s, temperature=float(t), alpha=0.8,
                            t2_scaling=True, **common, **method_kw), teacher=teachers[s],
                    teacher_spec=t_specs[s])
             for t in temps for s in seeds]
    results = []
    train_bundle(jobs, data, device, lambda j, r: results.append(r), compile=compile)
    bad = [r for r in results if isinstance(r, Exception)]
    if bad:
        raise RuntimeError(f"{len(bad)} runs failed: {bad[0]}")
    m = results[0].metrics
    return m["history"][-1]["images_per_s"] * m.get("group_size", 1), len(jobs)


RANGES = ("kdfair.data", "kdfair.forward", "kdfair.teacher", "kdfair.loss", "kdfair.backward",
          "kdfair.optimizer")


def profile(device: torch.device, x: torch.Tensor, y: torch.Tensor, grid: str, compile: bool,
            steps: int = 30, top: int = 15) -> dict:
    """Where the engine's time goes on the grid: one epoch of ``steps`` steps under
    torch.profiler (after one unprofiled epoch of warm-up). The engine's ranges (data, forward,
    teacher, loss, backward, optimizer: ``engine.fit``) as shares of their sum, in host time and,
    on CUDA, in device time, and their sum's share of the wall time; the top kernels (of the
    whole call, evaluation included) by device (CPU: self host) time; the share of device time
    in memory copies."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    kdfair_engine(device, x, y, grid, compile, epochs=1, steps=2)  # warm-up (and compile)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    t0 = time.perf_counter()
    with torch_profile(activities=acts) as prof:
        kdfair_engine(device, x, y, grid, compile, epochs=1, steps=steps)
    wall_ms = (time.perf_counter() - t0) * 1e3
    events = prof.key_averages()

    def dev(e, self_only: bool = False) -> float:
        names = (("self_device_time_total", "self_cuda_time_total") if self_only
                 else ("device_time_total", "cuda_time_total"))
        return float(next((getattr(e, n) for n in names if hasattr(e, n)), 0.0))

    ranges = {e.key: e for e in events if e.key in RANGES}
    host = {k: ranges[k].cpu_time_total / 1e3 if k in ranges else 0.0 for k in RANGES}
    device_ms = {k: dev(ranges[k]) / 1e3 if k in ranges else 0.0 for k in RANGES}
    cuda = device.type == "cuda"
    kernels = sorted((e for e in events if not e.key.startswith("kdfair.")),
                     key=lambda e: dev(e, True) if cuda else e.self_cpu_time_total,
                     reverse=True)[:top]
    total_dev = sum(dev(e, True) for e in events) or 1.0
    copies = sum(dev(e, True) for e in events if "memcpy" in e.key.lower()
                 or "memset" in e.key.lower())

    def shares(ms: dict) -> dict:
        total = sum(ms.values()) or 1.0
        return {k.split(".", 1)[1]: round(v / total, 4) for k, v in ms.items()}

    # the rest of the profiled call: building the bank, evaluation, the profiler's own cost
    return {"steps": steps, "wall_ms": round(wall_ms, 1),
            "steps_share_of_wall": round(sum(host.values()) / wall_ms, 4),
            "host_ms": host, "host_share": shares(host),
            "device_ms": device_ms if cuda else None,
            "device_share": shares(device_ms) if cuda else None,
            "copy_share_of_device_time": round(copies / total_dev, 4) if cuda else None,
            "top": [{"name": e.key, "calls": e.count,
                     "self_ms": round((dev(e, True) if cuda else e.self_cpu_time_total) / 1e3,
                                      3)} for e in kernels]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=sorted(GRIDS), default=None,
                    help="default: paper on CUDA, small on CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ref-steps", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile the grouped network")
    ap.add_argument("--methods", action="store_true",
                    help="also time each distillation method's DS grid relative to kd's")
    ap.add_argument("--profile", type=Path, default=None,
                    help="also profile a few engine steps; the breakdown to this JSON file")
    ap.add_argument("--profile-steps", type=int, default=30, help="one paper-grid epoch")
    args = ap.parse_args()
    device = resolve_device(args.device)
    grid = args.grid or ("paper" if device.type == "cuda" else "small")
    ref_steps = args.ref_steps or (200 if device.type == "cuda" else 12)
    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 1
    g = torch.Generator().manual_seed(0)
    n = max(GRIDS[grid][3], 64 * (ref_steps + 10))
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 100, (n,), generator=g)
    name = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; grid: {grid}")
    ref = reference(device, x, y, ref_steps, workers)
    print(f"reference loop (DataLoader, fp32, batch 64, live teacher, 1 student): "
          f"{ref:,.0f} student-images/s")
    ours, g_size = kdfair_engine(device, x, y, grid, args.compile)
    print(f"kdfair grouped engine ({g_size} students): {ours:,.0f} student-images/s")
    print(f"ratio: {ours / ref:.2f}")
    if args.profile is not None:
        found = profile(device, x, y, grid, args.compile, args.profile_steps)
        args.profile.write_text(json.dumps(found, indent=2))
        side = "device" if found["device_share"] else "host"
        print(f"where the time goes ({side} time, {found['steps']} steps, "
              f"{found['steps_share_of_wall']:.0%} of the profiled wall time; the rest builds "
              "and evaluates): " + ", ".join(f"{k} {v:.0%}"
                                             for k, v in found[f"{side}_share"].items()))
        if found["copy_share_of_device_time"] is not None:
            print(f"memory copies: {found['copy_share_of_device_time']:.1%} of device time")
        for k in found["top"][:10]:
            print(f"  {k['self_ms']:10.3f} ms  {k['calls']:6d}x  {k['name'][:90]}")
    if args.methods:  # the DS runs alone (no NDS), each method on the same grid
        base, _ = kdfair_engine(device, x, y, grid, args.compile, "kd", nds=False)
        print(f"method kd (DS only): {base:,.0f} student-images/s")
        for method in ("dkd", "lskd", "fitnet"):
            ips, _ = kdfair_engine(device, x, y, grid, args.compile, method, nds=False)
            print(f"method {method}: {ips:,.0f} student-images/s, cost relative to kd: "
                  f"{base / ips:.2f}x")


if __name__ == "__main__":
    main()
