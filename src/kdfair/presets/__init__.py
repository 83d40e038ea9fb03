"""Experiment presets shipped with kdfair: one YAML file per experiment."""

from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).parent


def preset_names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.yaml"))


def preset_path(name: str) -> Path | None:
    p = _DIR / f"{name}.yaml"
    return p if p.exists() else None
