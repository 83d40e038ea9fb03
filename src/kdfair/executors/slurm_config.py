"""SLURM settings: the ``slurm:`` section of an experiment file (``SlurmConfig``), its command-line
overrides (``--slurm-*``), SLURM time limits, and reading an experiment file with its section.

No import of ``kdfair.config`` at module level: the experiment model imports ``SlurmConfig``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kdfair.errors import ConfigError
from kdfair.options import format_errors

if TYPE_CHECKING:
    from kdfair.config import Experiment


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
    """Where and how the jobs of a study run: the ``slurm:`` section of an experiment file.

    Every field can be overridden on the command line (``--slurm-partition`` …).
    """

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


def slurm_config(section: dict[str, Any] | SlurmConfig | None = None,
                 **overrides: Any) -> SlurmConfig:
    """The experiment file's ``slurm:`` section with command-line overrides (None = not given)."""
    base = section.model_dump() if isinstance(section, SlurmConfig) else dict(section or {})
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "options":
            base["options"] = {**base.get("options", {}), **value}
        else:
            base[key] = value
    try:
        return SlurmConfig.model_validate(base)
    except ValidationError as err:
        header = "invalid SLURM settings (experiment file's slurm: section or --slurm-* flags):"
        raise ConfigError(format_errors(err, SlurmConfig, header, "slurm", noun="field")) \
            from None


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """``--slurm-option KEY=VALUE`` pairs as a dict (a bare KEY is a flag: ``--exclusive``)."""
    out: dict[str, Any] = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"--slurm-option {p!r}: give KEY=VALUE, e.g. qos=high")
        out[key] = value if eq else True
    return out


def load_experiment_and_slurm(path: str | Path) -> tuple[Experiment, dict[str, Any] | None]:
    """An experiment file (or preset) and its optional ``slurm:`` section, validated apart."""
    import yaml

    from kdfair.config import Experiment, experiment_from_dict, load_experiment
    from kdfair.presets import preset_path

    p = Path(path)
    if not p.exists():
        p = preset_path(str(path)) or p
    if not p.exists():
        return load_experiment(path), None  # raises the usual "no experiment file" error
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        return load_experiment(p), None  # raises the usual YAML error
    if not isinstance(data, dict):
        return load_experiment(p), None
    if "slurm" in Experiment.model_fields:  # the config owns the section
        exp = experiment_from_dict(data, str(p))
        section = getattr(exp, "slurm", None)
        if isinstance(section, BaseModel):
            section = section.model_dump()
        return exp, section
    section = data.pop("slurm", None)
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"invalid experiment {p}:\n  slurm: expected a mapping of SLURM "
                          "settings (partition, time, gpus, cpus, mem_gb, account, options…)")
    return experiment_from_dict(data, str(p)), section

