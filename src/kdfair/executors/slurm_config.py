"""SLURM settings: the experiment's ``slurm:`` section as ``kdfair.config.SlurmConfig`` (the
command line's ``--slurm-*`` flags reach it as overrides of the experiment)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kdfair.config import SlurmConfig
from kdfair.options import invalid


def slurm_config(section: dict[str, Any] | SlurmConfig | None = None) -> SlurmConfig:
    """The experiment's ``slurm:`` section, validated (None: the defaults)."""
    base = section.model_dump() if isinstance(section, SlurmConfig) else dict(section or {})
    try:
        return SlurmConfig.model_validate(base)
    except ValidationError as err:
        header = "invalid SLURM settings (the experiment's slurm: section):"
        raise invalid(err, SlurmConfig, header, "slurm", noun="field") from None
