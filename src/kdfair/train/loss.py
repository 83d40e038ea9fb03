"""The knowledge-distillation loss of Hinton et al. (2015), as the paper uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float = 0.8,
    t2_scaling: bool = True,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """alpha * [T²] * KL(softmax(t/T) ‖ softmax(s/T)) + (1 - alpha) * CE(s, y).

    The KL term is averaged over the batch. T² scaling keeps the soft term's gradient magnitude
    independent of T (Hinton et al.); it is on by default, as the paper leaves it open.
    """
    hard = F.cross_entropy(student_logits.float(), labels, label_smoothing=label_smoothing)
    if alpha == 0:
        return hard
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    soft = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    if t2_scaling:
        soft = soft * (t * t)
    return alpha * soft + (1 - alpha) * hard
