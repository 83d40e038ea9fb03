"""Write small run stores in the documented format (docs/store.md) with planted effects.

A run's predictions are drawn so that an input of class c is predicted correctly with probability
``accuracy(role, T, seed, c)``, otherwise as a uniformly drawn wrong class; its logits are noise
plus a bump at the predicted class, so argmax(logits) is that prediction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

AccuracyFn = Callable[[str, float | None, int, int], float]


def run_id(spec: dict) -> str:
    prefix = (f"ds-T{spec['temperature']:g}-s{spec['seed']}" if spec["role"] == "ds"
              else f"{spec['role']}-s{spec['seed']}")
    canon = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return f"{prefix}-{hashlib.sha256(canon.encode()).hexdigest()[:8]}"


def make_spec(role: str, seed: int, temperature: float | None = None, experiment: str = "toy",
              given: bool = False, teacher_run_id: str | None = None) -> dict:
    spec = {"experiment": experiment, "role": role, "arch": "lenet5", "model_options": {},
            "temperature": temperature if role == "ds" else None,
            "alpha": 0.8 if role == "ds" else None, "t2_scaling": True if role == "ds" else None,
            "seed": seed, "teacher_run_id": teacher_run_id, "train": {"epochs": 1},
            "dataset": {"name": "toy"}, "data_fingerprint": "fp0"}
    if given:
        spec["given"] = True
    return {"run_id": run_id(spec), **spec}


def draw_predictions(labels: np.ndarray, num_classes: int, acc_per_class: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    correct = rng.random(len(labels)) < acc_per_class[labels]
    wrong = (labels + rng.integers(1, num_classes, len(labels))) % num_classes
    return np.where(correct, labels, wrong)


def logits_for(pred: np.ndarray, num_classes: int, rng: np.random.Generator,
               margin: float = 4.0) -> np.ndarray:
    logits = rng.normal(0.0, 1.0, (len(pred), num_classes)).astype(np.float32)
    logits[np.arange(len(pred)), pred] += margin + np.abs(logits).max(1)
    return logits


def write_run(root: Path, spec: dict, logits: np.ndarray, labels: np.ndarray,
              index: np.ndarray | None = None, metrics: dict | None = None) -> Path:
    d = root / "runs" / spec["run_id"]
    d.mkdir(parents=True)
    (d / "spec.json").write_text(json.dumps(spec))
    acc = float(np.mean(logits.argmax(1) == labels))
    (d / "metrics.json").write_text(json.dumps(
        {"status": "ok", "test_acc": acc, "val_acc": acc, "train_loss": 0.1, "epochs": 1,
         "wall_time_s": 1.0, "device": "cpu", "versions": {}, "history": [],
         **(metrics or {})}))
    if index is None:
        index = np.arange(len(labels))
    else:
        logits, labels = logits[index], labels[index]
    with open(d / "predictions.npz", "wb") as f:
        np.savez(f, logits=logits.astype(np.float32, copy=False),
                 labels=labels.astype(np.int64), index=index.astype(np.int64))
    return d


def write_store(root: Path, *, num_classes: int = 5, n_per_class: int = 60,
                seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
                temperatures: tuple[float, ...] = (2.0, 4.0),
                accuracy: AccuracyFn | None = None,
                roles: tuple[str, ...] = ("teacher", "nds", "ds"),
                attributes: dict[str, list[str]] | None = None, features: bool = True,
                given_teacher: bool = False, analysis: dict | None = None,
                shuffle_index: bool = False, seed: int = 0, name: str = "toy",
                class_names: list[str] | None = None) -> Path:
    """A complete store. ``attributes`` maps name -> group names (codes drawn at random, with a
    few −1); ``accuracy(role, T, seed, class)`` plants effects (default: 0.7 everywhere)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    acc_fn = accuracy or (lambda role, t, s, c: 0.7)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    n = len(labels)
    class_names = class_names or [f"class{c}" for c in range(num_classes)]
    root.mkdir(parents=True, exist_ok=True)
    experiment = {"name": name, "dataset": {"name": "toy"},
                  "teacher": {"model": {"arch": "resnet20"}},
                  "student": {"model": {"arch": "lenet5"}},
                  "distill": {"temperatures": list(temperatures), "alpha": 0.8, "t2_scaling": True,
                              "teacher_policy": "paired"},
                  "seeds": list(seeds)}
    if analysis is not None:
        experiment["analysis"] = analysis
    (root / "experiment.json").write_text(json.dumps(experiment))
    attributes = attributes or {}
    (root / "data.json").write_text(json.dumps(
        {"dataset": "toy", "fingerprint": "fp0", "num_classes": num_classes,
         "class_names": class_names, "n_test": n, "attributes": attributes, "notes": []}))
    if attributes:
        codes = {k: np.where(rng.random(n) < 0.05, -1, rng.integers(0, len(v), n))
                 for k, v in attributes.items()}
        np.savez(root / "attributes.npz", index=np.arange(n, dtype=np.int64), **codes)
    if features:
        centres = rng.normal(0, 1, (num_classes, 12))
        np.save(root / "test_features.npy",
                (centres[labels] + rng.normal(0, 0.7, (n, 12))).astype(np.float32))
    teacher_ids: dict[int, str] = {}
    plan: list[tuple[str, float | None, int]] = []
    if "teacher" in roles:
        plan += [("teacher", None, 0)] if given_teacher else [("teacher", None, s) for s in seeds]
    if "nds" in roles:
        plan += [("nds", None, s) for s in seeds]
    if "ds" in roles:
        plan += [("ds", t, s) for t in temperatures for s in seeds]
    for role, t, s in plan:
        tid = None
        if role == "ds":
            tid = teacher_ids.get(s) or next(iter(teacher_ids.values()), None)
        spec = make_spec(role, s, t, experiment=name, given=given_teacher and role == "teacher",
                         teacher_run_id=tid)
        if role == "teacher":
            teacher_ids[s] = spec["run_id"]
        acc = np.array([acc_fn(role, t, s, c) for c in range(num_classes)])
        pred = draw_predictions(labels, num_classes, acc, rng)
        index = rng.permutation(n) if shuffle_index else None
        write_run(root, spec, logits_for(pred, num_classes, rng), labels, index)
    return root


def stored_predictions(root: Path) -> dict[str, tuple[dict, np.ndarray, np.ndarray]]:
    """run_id -> (spec, predictions, labels), read back plainly (np.load) in index order."""
    out = {}
    for d in sorted((Path(root) / "runs").iterdir()):
        try:
            spec = json.loads((d / "spec.json").read_text())
            with np.load(d / "predictions.npz") as z:
                order = np.argsort(z["index"])
                out[d.name] = (spec, z["logits"][order].argmax(1), z["labels"][order])
        except (OSError, ValueError, KeyError):
            continue
    return out
