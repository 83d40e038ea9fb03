"""RunSpec: everything that determines one run's outcome, and its stable run id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

Role = Literal["teacher", "nds", "ds"]
ROLES: tuple[str, ...] = get_args(Role)


def _fmt_t(t: float) -> str:
    return f"{t:g}"


def method_name(role: str, method: str | None) -> str | None:
    """The method a run was made with, from its role and stored ``method``: ``kd`` for a DS run
    stored without one (kd runs keep the ids made before methods existed), the control's name
    (``ls``) for an NDS run that is one, else None."""
    return method or ("kd" if role == "ds" else None)


def stored_method(name: str) -> str | None:
    """What a DS run of method ``name`` stores as its ``method``: None for ``kd`` (the inverse
    of :func:`method_name`), so that kd run ids stay what they always were."""
    return None if name == "kd" else name


@dataclass(frozen=True)
class RunSpec:
    """One run of a study. ``run_id`` is derived from the other fields (see ``docs/store.md``)."""

    experiment: str
    role: Role
    arch: str
    seed: int
    train: dict[str, Any]
    dataset: dict[str, Any]
    data_fingerprint: str
    model_options: dict[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    alpha: float | None = None
    t2_scaling: bool | None = None
    teacher_run_id: str | None = None
    given: bool = False
    # the distillation method of a DS run (None: ``kd``), or a teacher-free control of an NDS
    # run (``ls``); left out of the run id while None, so ids made before methods existed hold
    method: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)

    def content(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("method", "method_options"):
            if not d[k]:
                del d[k]
        return d

    @property
    def method_name(self) -> str | None:
        """``kd``, ``dkd``, … for DS runs, ``ls`` for the label-smoothing control, else None."""
        return method_name(self.role, self.method)

    @property
    def prefix(self) -> str:
        tag = f"{self.method}-" if self.method else ""
        if self.role == "ds":
            return f"ds-{tag}T{_fmt_t(self.temperature)}-s{self.seed}"  # type: ignore[arg-type]
        return f"{self.role}-{tag}s{self.seed}"

    @property
    def run_id(self) -> str:
        canon = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), default=str)
        return f"{self.prefix}-{hashlib.sha256(canon.encode()).hexdigest()[:8]}"

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, **self.content()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d.pop("run_id", None)
        return cls(**d)
