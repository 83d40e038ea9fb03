"""SLURM settings from the command line: the ``--slurm-*`` flags over the experiment file's
``slurm:`` section (``kdfair.config.SlurmConfig``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from kdfair.config import SlurmConfig
from kdfair.errors import ConfigError
from kdfair.options import format_errors


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


def parse_sbatch_options(pairs: Sequence[str]) -> dict[str, str]:
    """``--slurm-option KEY=VALUE`` pairs as a dict (a bare KEY is a flag: ``--exclusive``)."""
    out: dict[str, Any] = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"--slurm-option {p!r}: give KEY=VALUE, e.g. qos=high")
        out[key] = value if eq else True
    return out
