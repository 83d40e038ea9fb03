"""Training objectives: what one member of a bank minimises at each step.

The training loop is handed one objective per member and never branches on the role or the
method: a teacher and the NDS minimise cross-entropy, a distilled student its method's loss, the
label-smoothing control a smoothed cross-entropy. An objective is an ``nn.Module`` so that a
method with parameters of its own (FitNet's regressor) is optimised with the student; ``setup``
builds them once the member and its teacher exist. Each formula below is tested against a hand
computation (tests/test_methods.py).

Notation: s, t the student's and teacher's logits, y the label, T the temperature,
p^T = softmax(·/T), CE the cross-entropy with the hard labels, KL(p ‖ q) = Σ p log(p/q).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfair.errors import ConfigError
from kdfair.method_options import METHODS
from kdfair.spec import RunSpec
from kdfair.train.loss import kd_loss


@dataclass
class MemberStep:
    """What a member's objective sees at one step."""

    logits: torch.Tensor  # [B, K] the member's outputs
    labels: torch.Tensor  # [B]
    teacher_logits: torch.Tensor | None  # [B, K] on the same inputs, for distilled members
    epoch: float  # epochs of training done before this step (fractional)
    features: torch.Tensor | None = None  # output of ``student_layer`` for this member
    teacher_features: torch.Tensor | None = None  # output of ``teacher_layer`` of its teacher


class Objective(nn.Module):
    """Base: what the loop needs to know of an objective besides its value."""

    needs_teacher = False
    student_layer: str | None = None  # a named submodule whose output the objective needs
    teacher_layer: str | None = None

    def setup(self, student: nn.Module, teacher: nn.Module | None, example: Any) -> None:
        """Build any parameters of the objective's own, from the member and its teacher."""


class CrossEntropy(Objective):
    """CE(s, y), optionally with label smoothing ε: the teacher's and the NDS's objective."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, step: MemberStep) -> torch.Tensor:
        return F.cross_entropy(step.logits.float(), step.labels,
                               label_smoothing=self.label_smoothing)


class HintonKD(Objective):
    """``kd`` — Hinton et al. (2015): α · [T²] · KL(p_t^T ‖ p_s^T) + (1 − α) · CE(s, y)."""

    needs_teacher = True

    def __init__(self, temperature: float, alpha: float, t2_scaling: bool = True,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.temperature, self.alpha, self.t2 = temperature, alpha, t2_scaling
        self.label_smoothing = label_smoothing

    def forward(self, step: MemberStep) -> torch.Tensor:
        return kd_loss(step.logits, step.teacher_logits, step.labels,  # type: ignore[arg-type]
                       self.temperature, self.alpha, self.t2, self.label_smoothing)


def standardize(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score of each row of logits: (z − mean(z)) / (std(z) + eps), std with Bessel's
    correction (as Sun et al.'s code)."""
    return (z - z.mean(-1, keepdim=True)) / (z.std(-1, keepdim=True) + eps)


class LogitStandardKD(HintonKD):
    """``lskd`` — Sun et al. (CVPR 2024), logit standardisation: Hinton KD on Z-scored logits,
    α · [T²] · KL(softmax(Z(t)/T) ‖ softmax(Z(s)/T)) + (1 − α) · CE(s, y), Z as ``standardize``;
    CE on the raw logits."""

    def forward(self, step: MemberStep) -> torch.Tensor:
        s, t = step.logits.float(), step.teacher_logits.float()  # type: ignore[union-attr]
        hard = F.cross_entropy(s, step.labels, label_smoothing=self.label_smoothing)
        T = self.temperature
        soft = F.kl_div(F.log_softmax(standardize(s) / T, -1),
                        F.log_softmax(standardize(t) / T, -1),
                        reduction="batchmean", log_target=True)
        return self.alpha * soft * (T * T if self.t2 else 1.0) + (1 - self.alpha) * hard


class DecoupledKD(Objective):
    """``dkd`` — Zhao et al. (CVPR 2022), decoupled KD:
    CE(s, y) + w(e) · T² · (α · TCKD + β · NCKD), where, with p = softmax(·/T),
    TCKD = KL([p_t,y, 1 − p_t,y] ‖ [p_s,y, 1 − p_s,y]) (target vs the rest, binary),
    NCKD = KL(p̂_t ‖ p̂_s), p̂ = softmax over the non-target classes only (of ·/T),
    and the warm-up weight w(e) = min(e / warmup_epochs, 1) after e epochs (1 without warm-up).
    """

    needs_teacher = True

    def __init__(self, temperature: float, alpha: float = 1.0, beta: float = 8.0,
                 warmup_epochs: float = 0.0, label_smoothing: float = 0.0):
        super().__init__()
        self.temperature, self.alpha, self.beta = temperature, alpha, beta
        self.warmup, self.label_smoothing = warmup_epochs, label_smoothing

    def forward(self, step: MemberStep) -> torch.Tensor:
        s, t, y = step.logits.float(), step.teacher_logits.float(), step.labels  # type: ignore
        T = self.temperature
        target = F.one_hot(y, s.shape[-1]).bool()
        p_s, p_t = F.softmax(s / T, -1), F.softmax(t / T, -1)
        b_s = torch.stack([p_s[target], 1 - p_s[target]], -1).clamp_min(1e-12)
        b_t = torch.stack([p_t[target], 1 - p_t[target]], -1).clamp_min(1e-12)
        tckd = (b_t * (b_t.log() - b_s.log())).sum(-1).mean()
        masked = -1e9  # the target class out of the non-target distribution
        log_q_s = F.log_softmax((s / T).masked_fill(target, masked), -1)
        log_q_t = F.log_softmax((t / T).masked_fill(target, masked), -1)
        nckd = (log_q_t.exp() * (log_q_t - log_q_s)).masked_fill(target, 0).sum(-1).mean()
        warm = min(step.epoch / self.warmup, 1.0) if self.warmup > 0 else 1.0
        hard = F.cross_entropy(s, y, label_smoothing=self.label_smoothing)
        return hard + warm * T * T * (self.alpha * tckd + self.beta * nckd)


class FitNet(Objective):
    """``fitnet`` — Romero et al. (2015), a feature hint: CE(s, y) + w · mean‖r(F_s) − F_t‖²,
    F_s the output of the student's ``student_layer``, F_t that of the teacher's
    ``teacher_layer``, r a learned 1×1 convolution (a linear map for [B, C] features) from the
    student's channels to the teacher's; the student's map is average-pooled to the teacher's
    spatial size where they differ. r is initialised from the run's seed and discarded after
    training. Trained jointly with CE (as mdistiller does), not in two stages.
    """

    needs_teacher = True

    def __init__(self, student_layer: str, teacher_layer: str, weight: float = 100.0,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.weight, self.label_smoothing = weight, label_smoothing
        self.regressor: nn.Module | None = None

    def setup(self, student: nn.Module, teacher: nn.Module | None, example: Any) -> None:
        f_s = layer_output(student, self.student_layer, example, "student")
        f_t = layer_output(teacher, self.teacher_layer, example, "teacher")  # type: ignore
        if f_s.ndim != f_t.ndim or f_s.ndim not in (2, 4):
            raise ConfigError(
                f"fitnet: student layer {self.student_layer!r} gives {tuple(f_s.shape[1:])} and "
                f"teacher layer {self.teacher_layer!r} gives {tuple(f_t.shape[1:])}; pick two "
                "convolutional ([C, H, W]) or two flat ([C]) feature layers")
        cs, ct = f_s.shape[1], f_t.shape[1]
        self.regressor = (nn.Conv2d(cs, ct, 1, bias=False) if f_s.ndim == 4
                          else nn.Linear(cs, ct, bias=False))

    def forward(self, step: MemberStep) -> torch.Tensor:
        f_s, f_t = step.features.float(), step.teacher_features.float()  # type: ignore
        if f_s.ndim == 4 and f_s.shape[-2:] != f_t.shape[-2:]:
            f_s = F.adaptive_avg_pool2d(f_s, f_t.shape[-2:])
        hint = F.mse_loss(self.regressor(f_s), f_t)  # type: ignore[misc]
        hard = F.cross_entropy(step.logits.float(), step.labels,
                               label_smoothing=self.label_smoothing)
        return hard + self.weight * hint


@torch.no_grad()
def layer_output(model: nn.Module, layer: str, example: Any, who: str) -> torch.Tensor:
    """The output of ``model``'s submodule ``layer`` on ``example`` (a one-off forward)."""
    module = find_layer(model, layer, who)
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        was = model.training
        model.eval()
        model(example)
        model.train(was)
    finally:
        handle.remove()
    return seen[0]


def find_layer(model: nn.Module, layer: str, who: str) -> nn.Module:
    """``model.get_submodule(layer)``, with an error listing close names when there is none."""
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.4) or names[-8:]
        raise ConfigError(f"fitnet: the {who} has no layer {layer!r}; close names: "
                          f"{', '.join(close)}") from None


# name -> build(spec, its validated options, the recipe's label smoothing)
_BUILD: dict[str, Callable[[RunSpec, dict[str, Any], float], Objective]] = {
    "kd": lambda s, o, ls: HintonKD(s.temperature, s.alpha, s.t2_scaling, ls),  # type: ignore
    "lskd": lambda s, o, ls: LogitStandardKD(s.temperature, s.alpha, s.t2_scaling, ls),  # type: ignore
    "dkd": lambda s, o, ls: DecoupledKD(s.temperature, label_smoothing=ls, **o),  # type: ignore
    "fitnet": lambda s, o, ls: FitNet(label_smoothing=ls, **o),
    "ls": lambda s, o, ls: CrossEntropy(o["epsilon"]),
}
assert set(_BUILD) == set(METHODS)


def objective_for(spec: RunSpec, label_smoothing: float) -> Objective:
    """The objective a run minimises, from its spec alone."""
    name = spec.method_name
    if name is None:
        return CrossEntropy(label_smoothing)
    options = METHODS[name].model_validate(spec.method_options).model_dump()
    return _BUILD[name](spec, options, label_smoothing)
