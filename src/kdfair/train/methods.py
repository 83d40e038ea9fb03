"""Training objectives: what one member of a bank minimises at each step.

The training loop is handed one objective per member and never branches on the role or the
method: a teacher and the NDS minimise cross-entropy, a distilled student its method's loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from kdfair.spec import RunSpec
from kdfair.train.loss import kd_loss


@dataclass
class MemberStep:
    """What a member's objective sees at one step."""

    logits: torch.Tensor  # [B, K] the member's outputs
    labels: torch.Tensor  # [B]
    teacher_logits: torch.Tensor | None  # [B, K] on the same inputs, for distilled members
    progress: float  # share of training done before this step, in [0, 1)


class Objective(Protocol):
    needs_teacher: bool

    def __call__(self, step: MemberStep) -> torch.Tensor: ...


@dataclass(frozen=True)
class CrossEntropy:
    """Cross-entropy on the hard labels (teachers and non-distilled students)."""

    label_smoothing: float = 0.0
    needs_teacher: bool = False

    def __call__(self, step: MemberStep) -> torch.Tensor:
        return F.cross_entropy(step.logits.float(), step.labels,
                               label_smoothing=self.label_smoothing)


@dataclass(frozen=True)
class HintonKD:
    """Hinton et al. (2015): alpha · [T²] · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE."""

    temperature: float
    alpha: float
    t2_scaling: bool = True
    label_smoothing: float = 0.0
    needs_teacher: bool = True

    def __call__(self, step: MemberStep) -> torch.Tensor:
        return kd_loss(step.logits, step.teacher_logits, step.labels,  # type: ignore[arg-type]
                       self.temperature, self.alpha, self.t2_scaling, self.label_smoothing)


def objective_for(spec: RunSpec, label_smoothing: float) -> Objective:
    """The objective a run minimises, from its spec alone."""
    if spec.role != "ds":
        return CrossEntropy(label_smoothing)
    return HintonKD(float(spec.temperature), float(spec.alpha),  # type: ignore[arg-type]
                    bool(spec.t2_scaling), label_smoothing)
