"""Which setting most likely made a run's loss non-finite: a pure function of its spec."""

from __future__ import annotations

from typing import Any

from kdfair.spec import RunSpec

# Past these, a setting is the usual suspect (Hinton KD with T² scaling multiplies the soft
# term's gradient by T; alpha near 1 leaves no hard-label anchor; SGD above ~0.5 diverges).
HIGH_T = 20.0
HIGH_LR = {"sgd": 0.5, "adam": 0.01, "adamw": 0.01}


def nonfinite_loss_hint(spec: RunSpec) -> str:
    """A hint naming the setting most likely at fault for a NaN/inf loss in this run:
    the temperature, alpha, or the learning rate (the default suspect)."""
    train: dict[str, Any] = spec.train or {}
    lr, opt = float(train.get("lr", 0.1)), str(train.get("optimizer", "sgd"))
    limit = HIGH_LR.get(opt, 0.5)
    if spec.role == "ds" and spec.temperature is not None:
        t = float(spec.temperature)
        if t >= HIGH_T:
            return (f"most likely the temperature T={t:g}: the soft targets "
                    f"{'scaled by T² ' if spec.t2_scaling else ''}overflow; try a smaller T")
        if t < 0.5:
            return (f"most likely the temperature T={t:g}: logits divided by a tiny T "
                    "overflow the softmax; try T >= 1")
        if spec.alpha is not None and spec.alpha >= 1 and lr <= limit:
            return (f"most likely alpha={spec.alpha:g}: with no hard-label term the student "
                    "can drift; try alpha < 1 or a smaller lr")
    if lr > limit:
        return f"most likely the learning rate lr={lr:g}, high for {opt}; try a smaller lr"
    return f"most likely the learning rate lr={lr:g} ({opt}); try a smaller lr or warmup_epochs"
