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
"""

from __future__ import annotations

import argparse
import os
import time

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
                  compile: bool, method: str = "kd", nds: bool = True) -> tuple[float, int]:
    """Student-images/s of kdfair's grouped engine on the grid (second epoch, after warm-up)."""
    temps, seeds, batch, n = GRIDS[grid]
    part = Part(y=y[:n], x=x[:n])
    data = SplitData(name="bench", train=part, val=Part(y=y[:256], x=x[:256]),
                     test=Part(y=y[:256], x=x[:256]), num_classes=100,
                     class_names=[str(i) for i in range(100)], fingerprint="bench",
                     mean=MEAN, std=STD)
    train = {"epochs": 2, "batch_size": batch, "lr": 0.05, "augment": "crop_flip"}
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
    if args.methods:  # the DS runs alone (no NDS), each method on the same grid
        base, _ = kdfair_engine(device, x, y, grid, args.compile, "kd", nds=False)
        print(f"method kd (DS only): {base:,.0f} student-images/s")
        for method in ("dkd", "lskd", "fitnet"):
            ips, _ = kdfair_engine(device, x, y, grid, args.compile, method, nds=False)
            print(f"method {method}: {ips:,.0f} student-images/s, cost relative to kd: "
                  f"{base / ips:.2f}x")


if __name__ == "__main__":
    main()
