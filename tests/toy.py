"""A tiny synthetic image study for the core tests (no files, a few seconds on a CPU)."""

from __future__ import annotations

import numpy as np

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05}

# the smallest study an experiment file can name: digits at 16 px, LeNet-5 both, one epoch
TINY_YAML = """\
name: tiny
dataset: {name: digits, size: 16}
teacher:
  model: {arch: lenet5}
  train: {optimizer: adam, lr: 0.01, weight_decay: 0.0, epochs: 1, batch_size: 128,
          augment: none}
student:
  model: {arch: lenet5}
  train: {optimizer: adam, lr: 0.01, weight_decay: 0.0, epochs: 1, batch_size: 128,
          augment: none}
distill: {temperatures: [4]}
seeds: [0, 1]
device: cpu
"""


def toy_split(n: int, seed: int, classes: int = 4):
    """uint8 images [n, 3, 16, 16] whose class is a bright band; one binary attribute."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (rng.random((n, 3, 16, 16)) * 60).astype(np.uint8)
    for c in range(classes):
        x[y == c, c % 3, 4 * c : 4 * c + 4, :] = 250
    return x, y, {"grp": rng.integers(0, 2, n)}


def toy_study(out, temperatures=(1, 4), seeds=(0, 1), **kw):
    from kdfair import api

    return api.study(
        "toy", toy_split(128, 0), toy_split(32, 1), toy_split(64, 2), "resnet8", "lenet5",
        temperatures=temperatures, seeds=seeds, teacher_train=TRAIN, student_train=TRAIN,
        out=out, device="cpu", write_report=kw.pop("write_report", False), **kw)
