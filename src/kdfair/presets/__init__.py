"""Experiment presets shipped with kdfair: one YAML file per experiment."""

from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).parent
NOT_PRESETS = {"paper-numbers"}  # package data beside the presets (the paper's numbers)


def preset_names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.yaml") if p.stem not in NOT_PRESETS)


def preset_path(name: str) -> Path | None:
    p = _DIR / f"{name}.yaml"
    return p if p.exists() and name not in NOT_PRESETS else None
