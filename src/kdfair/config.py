"""Experiment configuration: pydantic models, YAML loading, and errors that name the bad field."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdfair.errors import ConfigError
from kdfair.executors import SlurmConfig
from kdfair.options import format_errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(v: float, what: str) -> float:
    """Refuse inf and NaN (pydantic's gt/ge bounds let +inf through, YAML reads `.inf`/`.nan`)."""
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number; got {v}")
    return v


NAME_RULE = ("letters, digits, '_', '-' and '.', not starting with a dot (it becomes one "
             "directory name under --out)")


def check_name(v: str) -> str:
    """An experiment name is one safe path component: no separators, not '.', '..' or hidden."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", v or ""):
        raise ValueError(f"name {v!r} is not allowed: use {NAME_RULE}")
    return v


class DatasetConfig(BaseModel):
    """Which data set, where it lives, and loader options.

    Options beyond the common fields (e.g. Trifeature's ``size``) are passed to the loader, which
    validates them with its own model.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    root: Path | None = None
    download: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from kdfair.data.registry import dataset_names

        if v not in dataset_names():
            raise ValueError(f"unknown dataset {v!r}; allowed: {', '.join(dataset_names())}")
        return v

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(BaseModel):
    """An architecture from the model registry plus its options (passed to the factory)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    arch: str
    weights: str | None = None  # pretrained weights by name (torchvision), teachers only
    checkpoint: Path | None = None  # local safetensors checkpoint, teachers only
    download: bool = False  # allow fetching ``weights`` from the network

    @field_validator("arch")
    @classmethod
    def _known(cls, v: str) -> str:
        from kdfair.models.registry import model_names

        if v not in model_names():
            raise ValueError(f"unknown architecture {v!r}; allowed: {', '.join(model_names())}")
        return v

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(_Strict):
    """The training recipe of one role."""

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "linear", "step", "constant"] = "cosine"
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    step_gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: float = Field(0.0, ge=0)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    augment: Literal["crop_flip", "crop", "flip", "none"] = "crop_flip"
    crop_padding: int = Field(4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    @field_validator("lr", "momentum", "weight_decay", "step_gamma", "warmup_epochs",
                     "label_smoothing")
    @classmethod
    def _finite_number(cls, v: float, info: Any) -> float:
        return _finite(v, info.field_name)

    @field_validator("step_milestones")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < m < 1 for m in v) or list(v) != sorted(v):
            raise ValueError("step_milestones are increasing fractions of training, each in (0, 1)")
        return v


class RoleConfig(_Strict):
    """A model and how to train it."""

    model: ModelConfig
    train: TrainConfig = TrainConfig()


class DistillConfig(_Strict):
    """Hinton KD: alpha on the soft (KL) term, 1 - alpha on hard-label cross-entropy."""

    temperatures: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    alpha: float = 0.8
    t2_scaling: bool = True
    teacher_policy: Literal["paired", "single"] = "paired"

    @field_validator("temperatures")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("give at least one temperature, e.g. [1, 2, 4, 8]")
        bad = [t for t in v if not t > 0]
        if bad:
            raise ValueError(f"temperatures must be > 0; got {bad}")
        for t in v:
            _finite(t, "temperatures")
        if len(set(v)) != len(v):
            raise ValueError(f"temperatures must be distinct; got {list(v)}")
        return tuple(float(t) for t in v)

    @field_validator("alpha")
    @classmethod
    def _unit(cls, v: float) -> float:
        if not 0 <= v <= 1:  # also refuses NaN
            raise ValueError(f"alpha must lie in [0, 1] (weight of the soft term); got {v}")
        return v


class AnalysisConfig(_Strict):
    """How the run store is analysed."""

    tests: bool = True
    significance: float = Field(0.05, gt=0, lt=1)
    test_on: Literal["relative", "raw"] = "relative"
    individual_k: int = Field(10, ge=1)
    similarity: Literal["pca", "features", "pixels"] = "pca"  # pixels: alias of features
    similarity_dim: int = Field(32, ge=1)
    individual_norm: Literal["tv", "l1", "l2"] = "tv"  # distance between predicted distributions
    bootstrap: int = Field(0, ge=0)


class EngineConfig(_Strict):
    """How runs are trained; never changes a run's result beyond floating-point rounding."""

    # train a bundle's runs together: true, false, or auto — on CUDA always (one network of
    # grouped convolutions); on a CPU only when the group shares live teacher forward passes
    # (members then run as plain models side by side: grouped convolutions cost more there)
    grouped: bool | Literal["auto"] = "auto"
    max_group: int = Field(0, ge=0)  # most runs per group; 0 = as many as fit the device
    compile: bool = False  # torch.compile the grouped network (CUDA; slower start)
    # CPU threads per training process; 0 = the cores available to the process divided among
    # the workers. Results depend on it (floating-point reduction order), so every run records
    # it and a report says when a study's runs were made under different settings.
    threads: int = Field(0, ge=0)
    # how logits are stored: float16 halves what the analysis reads (docs/store.md says how
    # much it can change a reported number)
    logits_dtype: Literal["float32", "float16"] = "float32"


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def engine_threads(engine: EngineConfig, workers: int = 1) -> int:
    """``engine.threads``, or the available cores divided among ``workers``."""
    return engine.threads or max(1, available_cores() // max(1, workers))


class Experiment(_Strict):
    """A whole study: data, teacher, student, distillation grid, seeds, device, analysis."""

    name: str
    dataset: DatasetConfig
    teacher: RoleConfig
    student: RoleConfig
    distill: DistillConfig = DistillConfig()
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    engine: EngineConfig = EngineConfig()
    slurm: SlurmConfig | None = None  # defaults for `kdfair run --executor slurm`
    analysis: AnalysisConfig = AnalysisConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("give at least one seed, e.g. [0, 1, 2]")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct; got {list(v)}")
        if any(s < 0 for s in v):
            raise ValueError(f"seeds must be >= 0; got {list(v)}")
        return v

    @model_validator(mode="after")
    def _enough_seeds(self) -> Experiment:
        if self.analysis.tests and len(self.seeds) < 2:
            raise ValueError(
                "seeds: Welch t-tests need at least 2 seeds per role; add seeds or set "
                "analysis.tests: false"
            )
        return self


def experiment_from_dict(data: dict[str, Any], source: str = "(dict)") -> Experiment:
    """Validate a plain mapping into an Experiment, raising ConfigError naming each bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid experiment {source}: expected a mapping at the top level")
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, Experiment, f"invalid experiment {source}:",
                                        noun="field")) from None


def load_experiment(path: str | Path) -> Experiment:
    """Read an experiment YAML file (``yaml.safe_load``) or a preset name."""
    from kdfair.presets import preset_path

    p = Path(path)
    if not p.exists():
        found = preset_path(str(path))
        if found is None:
            raise ConfigError(
                f"no experiment file {str(path)!r} and no preset of that name; "
                "`kdfair presets` lists the presets"
            )
        p = found
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    return experiment_from_dict(data, str(p))
