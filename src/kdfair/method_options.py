"""The distillation methods by name and their options (validated in the experiment file).

The objectives themselves (formulas, tests) are in ``kdfair.train.methods``; this module holds
only what configuration needs, so that the config layer does not import the training layer.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kdfair.errors import ConfigError
from kdfair.options import validate_options


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KDOptions(_Options):
    """``kd`` and ``lskd``: temperature, alpha and T² scaling come from the distill section."""


class DKDOptions(_Options):
    alpha: float = Field(1.0, ge=0, allow_inf_nan=False,
                         description="weight of the target-class term (TCKD)")
    beta: float = Field(8.0, ge=0, allow_inf_nan=False,
                        description="weight of the non-target term (NCKD)")
    warmup_epochs: float = Field(0.0, ge=0, allow_inf_nan=False,
                                 description="epochs over which the KD term ramps up")


class FitNetOptions(_Options):
    student_layer: str = Field(description="named student submodule, e.g. conv2 (LeNet-5)")
    teacher_layer: str = Field(description="named teacher submodule, e.g. layer3 (ResNets)")
    weight: float = Field(100.0, ge=0, allow_inf_nan=False,
                          description="weight of the hint (MSE) term")


class LSOptions(_Options):
    epsilon: float = Field(0.1, gt=0, lt=1, description="label smoothing of the control")


METHODS: dict[str, type[_Options]] = {
    "kd": KDOptions, "dkd": DKDOptions, "lskd": KDOptions, "fitnet": FitNetOptions,
    "ls": LSOptions,
}
TEACHER_FREE = frozenset({"ls"})  # controls: students without a teacher, one run per seed


def method_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validated options of method ``name``, defaults left out (so they stay out of run ids)."""
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown distillation method {name!r}{hint}; methods: "
                          f"{', '.join(METHODS)}")
    model = validate_options(METHODS[name], options, f"distill.methods.{name}",
                             f"method {name!r}")
    return model.model_dump(exclude_defaults=True)
