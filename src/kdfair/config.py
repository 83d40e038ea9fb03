"""Experiment configuration: pydantic models, YAML loading with overrides (``load_experiment``,
the one way in), and errors that name the bad field.

Config imports no registry: the data set and model registries add their name checks here when
they are imported (``register_name_check``), so that a name is checked where it is known.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdfair.errors import ConfigError
from kdfair.method_options import method_options
from kdfair.options import invalid
from kdfair.overrides import LABEL, Overrides, apply_overrides, as_overrides, describe
from kdfair.paths import is_safe_name
from kdfair.reading import ReadError, load_yaml_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(v: float, what: str) -> float:
    """Refuse inf and NaN (pydantic's gt/ge bounds let +inf through, YAML reads `.inf`/`.nan`)."""
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number; got {v}")
    return v


NAME_RULE = ("letters, digits, '_', '-' and '.', not starting with a dot (it becomes the "
             "name of the study's directory)")

# kind ("dataset", "arch") -> check(name), raising ConfigError naming the known names; added by
# the registries (data.registry, models.registry) when imported
_NAME_CHECKS: dict[str, Callable[[str], object]] = {}


def register_name_check(kind: str, check: Callable[[str], object]) -> None:
    """Let the registry of ``kind`` ("dataset" or "arch") check the names an experiment gives."""
    _NAME_CHECKS[kind] = check


def _checked_name(kind: str, name: str) -> str:
    """``name`` if the registry of ``kind`` knows it (or is not loaded); else a ValueError."""
    check = _NAME_CHECKS.get(kind)
    if check is not None:
        try:
            check(name)
        except ConfigError as err:
            raise ValueError(str(err)) from None
    return name


def check_name(v: str) -> str:
    """An experiment name is one safe path component: no separators, not '.', '..' or hidden."""
    if not is_safe_name(v):
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
        return _checked_name("dataset", v)

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
        return _checked_name("arch", v)

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


class MethodConfig(_Strict):
    """One distillation method of the study and its options (``kdfair.method_options``)."""

    name: str
    options: dict[str, Any] = {}


class DistillConfig(_Strict):
    """The distilled students: methods × temperatures. ``alpha`` weighs the soft (KL) term of
    ``kd``/``lskd`` (1 - alpha on hard-label cross-entropy); ``ls`` is a teacher-free control."""

    temperatures: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    alpha: float = 0.8
    t2_scaling: bool = True
    teacher_policy: Literal["paired", "single"] = "paired"
    # names, or mappings {name: dkd, beta: 4, …}; each method × each temperature × each seed
    methods: tuple[MethodConfig, ...] = (MethodConfig(name="kd"),)

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, v: Any) -> Any:
        if isinstance(v, (str, dict)):
            v = [v]
        out = []
        for item in v or []:
            if isinstance(item, MethodConfig):
                out.append(item)
                continue
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict) or "name" not in item:
                raise ValueError("give a method name (kd, dkd, lskd, fitnet, ls) or a mapping "
                                 "with a name and its options, e.g. {name: dkd, beta: 8}")
            opts = {k: w for k, w in item.items() if k not in ("name", "options")}
            opts.update(item.get("options") or {})
            try:
                opts = method_options(item["name"], opts)
            except ConfigError as err:
                raise ValueError(str(err)) from None
            out.append(MethodConfig(name=item["name"], options=opts))
        if not out:
            raise ValueError("give at least one method, e.g. [kd]")
        keys = [(m.name, tuple(sorted(m.options.items()))) for m in out]
        if len(set(keys)) != len(keys):
            raise ValueError("methods must be distinct (same name and options twice)")
        return tuple(out)

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
    significance: float = Field(0.05, gt=0, lt=1)  # the test level (not the KD weight alpha)
    test_on: Literal["relative", "raw"] = "relative"
    # class-wise test: Welch's t-test (the paper) or an exact permutation test of the means
    test: Literal["welch", "permutation"] = "welch"
    # unpaired groups (the paper) or seed-matched differences (DS seed k vs NDS / teacher seed k)
    pairing: Literal["unpaired", "paired"] = "unpaired"
    individual_k: int = Field(10, ge=1)
    similarity: Literal["pca", "features", "pixels"] = "pca"  # pixels: alias of features
    similarity_dim: int = Field(32, ge=1)
    individual_norm: Literal["tv", "l1", "l2"] = "tv"  # distance between predicted distributions
    bootstrap: int = Field(0, ge=0)  # test-set bootstrap resamples for DPD / EOD (0: none)
    # the 95 % interval of every seed mean: Student's t (exact for normal seeds, honest width at
    # 3-5 seeds) or the percentile bootstrap over seeds (narrow-biased with few seeds)
    seed_ci: Literal["t", "bootstrap"] = "t"
    seed_resamples: int = Field(2000, ge=0)  # bootstrap resamples (seed_ci: bootstrap); 0: no CIs
    permutations: int = Field(9999, ge=99)  # resamples of permutation tests (exact if fewer)
    vector_figures: bool = True  # SVG and PDF beside every PNG figure
    random_seed: int = 0  # RNG seed of the seed bootstrap and permutation tests (reproducible)

    @model_validator(mode="before")
    @classmethod
    def _old_alpha(cls, data: Any) -> Any:
        """Old experiment.json files call the test level ``alpha``; read it as significance."""
        if isinstance(data, dict) and "alpha" in data:
            data = dict(data)
            level = data.pop("alpha")
            data.setdefault("significance", level)
        return data


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
    # training processes on a CPU: 0 = one per core this process may use (the default), N = N,
    # 1 = this process. A phase's runs are split over them (as over GPUs), each worker with the
    # cores divided among the workers as its threads — one thread per run at the default, so
    # results do not depend on the machine's cores, every core is used, and a busy core slows a
    # study by the share it takes (not 20x, as threads waiting on each other do).
    workers: int = Field(0, ge=0)
    # how logits are stored: float16 halves what the analysis reads (docs/store.md says how
    # much it can change a reported number)
    logits_dtype: Literal["float32", "float16"] = "float32"
    # arithmetic of training, the teachers' logits, evaluation and counterfactual logits alike:
    # auto = bf16 autocast on CUDA, fp32 elsewhere; fp32 = no autocast anywhere (and no TF32 on
    # CUDA); bf16 = bf16 autocast on any device. Every run records the precision it used.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # CUDA: cuDNN's deterministic algorithms, no benchmark autotuning, and
    # torch.use_deterministic_algorithms (slower; recorded per run)
    deterministic: bool = False


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_workers(engine: EngineConfig) -> int:
    """Training processes on a CPU: ``engine.workers``, or one per available core (0)."""
    return engine.workers or available_cores()


def engine_threads(engine: EngineConfig, workers: int = 1) -> int:
    """``engine.threads``, or the available cores divided among ``workers``."""
    return engine.threads or max(1, available_cores() // max(1, workers))


def parse_minutes(value: str | int | float) -> int:
    """A SLURM time limit in minutes: 90, "90", "1:30:00", "2-00:00:00", "30:00" (MM:SS)."""
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip().lower()
    if s in ("infinite", "unlimited"):
        return 0
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if not m:
        raise ValueError(f"not a SLURM time: {value!r} (give minutes, H:MM:SS or D-HH:MM:SS)")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        return days * 1440 + a * 60 + (b or 0) + ((c or 0) + 59) // 60
    if c is not None:  # H:M:S
        return a * 60 + b + (c + 59) // 60  # type: ignore[operator]
    if b is not None:  # M:S
        return a + (b + 59) // 60
    return a  # type: ignore[return-value]


class SlurmConfig(BaseModel):
    """Where and how the jobs of a study run: the ``slurm:`` section of an experiment file
    (overridden like any field: ``slurm.partition=gpu``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = None  # None: the cluster's default partition
    time: int = Field(120, ge=1)  # time limit per job in minutes (also "H:MM:SS", "D-HH:MM:SS")
    gpus: int | None = Field(None, ge=0)  # per job; None: 1, or 0 when the device is "cpu"
    cpus: int = Field(8, ge=1)  # CPU cores per job (also torch's thread count in the job)
    mem_gb: float | None = Field(None, gt=0)  # memory per job; None: the partition's default
    account: str | None = None
    runs_per_job: int | None = Field(None, ge=1)  # None: one job per bundle
    max_parallel: int | None = Field(None, ge=1)  # at most this many jobs of an array at once
    options: dict[str, str | int | float | bool] = {}  # more sbatch options: {qos: high, …}
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load, source venv)
    python: str | None = None  # the interpreter on the nodes; None: this one (sys.executable)
    check_store: bool = True  # test-write the results directory from a job before submitting

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> int:
        return parse_minutes(v)

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        reserved = {"array", "output", "error", "dependency", "job-name", "job_name", "wrap"}
        bad = sorted(k for k in v if k.replace("_", "-") in reserved or k.startswith("-"))
        if bad:
            raise ValueError(f"options {bad} are set by kdfair itself; give sbatch option names "
                             "without dashes, e.g. {qos: high, constraint: a100}")
        return v

    def gpus_for(self, exp: Experiment) -> int:
        if self.gpus is not None:
            return self.gpus
        return 0 if exp.device == "cpu" else 1


class StoreConfig(_Strict):
    """What the results directory keeps besides predictions."""

    # every trained model's weights (safetensors, beside its run: export, load_model), or only
    # the teachers' (students distil from them). Never changes a result.
    keep_weights: Literal["all", "teachers"] = "all"


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
    store: StoreConfig = StoreConfig()
    slurm: SlurmConfig | None = None  # the SLURM executor's settings
    analysis: AnalysisConfig = AnalysisConfig()
    # per-epoch curves of every run as TensorBoard event files (kdfair.tracking)
    tracking: Literal["none", "tensorboard"] = "none"

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


def experiment_from_dict(data: Mapping[str, Any], source: str = "(dict)") -> Experiment:
    """Validate a plain mapping into an Experiment, raising ConfigError naming each bad field
    (``ConfigError.problems``: (field path, what is wrong))."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid experiment {source}: expected a mapping at the top level")
    try:
        return Experiment.model_validate(dict(data))
    except ValidationError as err:
        raise invalid(err, Experiment, f"invalid experiment {source}:", noun="field") from None


def load_experiment(source: Experiment | Mapping[str, Any] | str | Path,
                    overrides: Overrides = (), label: str = LABEL) -> Experiment:
    """The one way in: an experiment from a YAML file, a preset name, a mapping or an
    Experiment, with every override applied to it as written (``["distill.alpha=0.5"]``,
    ``{"distill.alpha": 0.5}`` or ``overrides.Override``s), validated once. ``label`` names the
    overrides in messages."""
    if isinstance(source, Experiment) and not overrides:
        return source
    data, where = _experiment_data(source)
    if overrides:
        parsed = as_overrides(overrides, label)  # once, for both uses
        data = apply_overrides(data, parsed, label)
        where = f"{where} with {describe(parsed, label)}"
    return experiment_from_dict(data, where)


def _experiment_data(source: Experiment | Mapping[str, Any] | str | Path) -> tuple[Any, str]:
    """The experiment as a plain mapping, and how messages name it."""
    if isinstance(source, Experiment):
        return source.model_dump(mode="json"), repr(source.name)
    if isinstance(source, Mapping):
        return dict(source), "(dict)"
    return read_experiment_file(source)


def read_experiment_file(path: str | Path) -> tuple[Any, str]:
    """The YAML of an experiment file or a preset (safe and bounded: ``kdfair.reading``), and
    its path."""
    from kdfair.presets import preset_names, preset_path
    from kdfair.suggest import did_you_mean

    p = Path(path)
    if not p.exists():
        found = preset_path(str(path))
        if found is None:
            raise ConfigError(
                f"no experiment file {str(path)!r} and no preset of that name"
                f"{did_you_mean(str(path), preset_names())}; `kdfair presets` lists the presets"
            )
        p = found
    try:  # bounded: a regular UTF-8 file, aliases that do not explode
        return load_yaml_file(p), str(p)
    except ReadError as err:
        raise ConfigError(str(err)) from None
