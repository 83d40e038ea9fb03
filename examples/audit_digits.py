"""Audit predictions made outside kdfair: a plain-PyTorch teacher and students on scikit-learn's
digits, their test predictions dumped to .npy files, then `kdfair audit` on them.

    python examples/audit_digits.py --out results/audit-example      # ~10 s on a laptop CPU
    kdfair audit results/audit-example/predictions/predictions.yaml --out results/audit-example

Nothing here uses kdfair until the last step: swap in your own training code (torchdistill,
mdistiller, …) and keep only the dumping part. Group fairness uses a made-up attribute, "ink"
(whether a digit has more ink than the median), to show the format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def fit(model, x, y, epochs, seed, teacher=None, temperature=1.0, alpha=0.8):
    """Adam on full batches; with a teacher, Hinton's loss (T² × KL on soft targets)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    soft = F.softmax(teacher(x) / temperature, 1).detach() if teacher is not None else None
    for _ in range(epochs):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if soft is not None:
            kl = F.kl_div(F.log_softmax(logits / temperature, 1), soft, reduction="batchmean")
            loss = alpha * temperature**2 * kl + (1 - alpha) * loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def main(out: Path, epochs: int, seeds: list[int], temperatures: list[float]) -> Path:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    xt, yt, xe = torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te)
    pred_dir = out / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)

    def dump(model, name):
        with torch.no_grad():
            np.save(pred_dir / f"{name}.npy", model(xe).numpy())  # logits [N, 10]
        return f"{name}.npy"

    files = {"teacher": [], "nds": [], "ds": {t: [] for t in temperatures}}
    for s in seeds:
        torch.manual_seed(s)
        teacher = fit(mlp(256), xt, yt, epochs, s)
        files["teacher"].append(dump(teacher, f"teacher-s{s}"))
        torch.manual_seed(1000 + s)
        files["nds"].append(dump(fit(mlp(16), xt, yt, epochs, s), f"nds-s{s}"))
        for t in temperatures:
            torch.manual_seed(1000 + s)  # the same initialisation as the NDS of this seed
            student = fit(mlp(16), xt, yt, epochs, s, teacher=teacher, temperature=t)
            files["ds"][t].append(dump(student, f"ds-T{t:g}-s{s}"))
    np.save(pred_dir / "labels.npy", y_te)
    np.save(pred_dir / "features.npy", x_te)  # the similarity space for individual fairness
    ink = np.where(x_te.sum(1) > np.median(x_te.sum(1)), "heavy", "light")
    np.savez(pred_dir / "groups.npz", ink=(ink == "heavy").astype(np.int64))
    spec = {"name": "digits-audit", "labels": "labels.npy", "features": "features.npy",
            "class_names": [str(i) for i in range(10)],
            "groups": "groups.npz", "group_names": {"ink": ["light", "heavy"]},
            "teacher_arch": "mlp-256", "student_arch": "mlp-16", "dataset": "sklearn digits",
            "distill": {"alpha": 0.8, "t2_scaling": True, "teacher_policy": "paired"},
            **files}
    path = pred_dir / "predictions.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/audit-example"))
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1, 4, 8])
    ap.add_argument("--no-audit", action="store_true", help="only dump the predictions")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    written = main(args.out, args.epochs, args.seeds, args.temperatures)
    print(f"predictions: {written}")
    if not args.no_audit:
        import kdfair
        from kdfair.auditing import load_audit_file

        where = kdfair.audit(**load_audit_file(written), out=args.out)
        print(f"report: {where / 'report' / 'report.html'}")
