"""Sweeps: one study per value of a field (``distill.alpha=0.5,0.8,0.9``), several fields'
values crossed (their product).

Each study is the experiment with the point's fields set and its name suffixed by them
(``demo-alpha0.5``, ``demo-alpha0.5-t2_scalingfalse``), so each has its own results directory
and resumes like any study; ``kdfair compare`` then puts them side by side.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from kdfair.config import Experiment, load_experiment
from kdfair.errors import ConfigError
from kdfair.overrides import Override, split_path
from kdfair.reading import ReadError, load_yaml

LABEL = "--sweep"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Sweep:
    """One swept field: its keys, its values, and how the caller wrote it."""

    keys: tuple[str, ...]
    values: tuple[Any, ...]
    given_as: str

    @property
    def path(self) -> str:
        return ".".join(self.keys)


def parse_sweep(text: str, label: str = LABEL) -> Sweep:
    """``"distill.alpha=0.5,0.8"`` → a Sweep of 0.5 and 0.8 (values read as one YAML flow list,
    so ``distill.temperatures=[1,2],[4,8]`` sweeps two lists)."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    example = "e.g. distill.alpha=0.5,0.8,0.9"
    if not sep or not path or not raw.strip():
        raise ConfigError(f"{label} {text!r}: expected DOTTED.PATH=VALUE,VALUE,…, {example}")
    try:  # bounded, like --set: an alias bomb is refused, not expanded
        values = load_yaml(f"[{raw}]", f"{label} {path}: the list of values")
    except ReadError as err:
        raise ConfigError(f"{err}; give them as a comma-separated list, {example}") from None
    keys = tuple(split_path(path, label))
    if keys == ("name",):
        raise ConfigError(f"{label} name: the sweep names its studies itself; sweep another "
                          "field")
    seen = [yaml.safe_dump(v) for v in values]
    if len(set(seen)) < len(seen):
        raise ConfigError(f"{label} {path}: a value is given twice ({raw}); give each once")
    return Sweep(keys, tuple(values), f"{label} {text}")


def token(value: Any) -> str:
    """A value as part of a study name: ``0.5``, ``false``, ``[1, 4]`` → ``1_4``."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...")
    return _UNSAFE.sub("_", text.strip()).strip("_.") or "x"


def points(sweeps: Sequence[Sweep]) -> list[list[Override]]:
    """Every combination of the swept values (the first sweep varies slowest), as overrides."""
    paths = [s.path for s in sweeps]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise ConfigError(f"{LABEL} {twice[0]} is given twice: give all its values in one "
                          f"{LABEL} {twice[0]}=A,B,…")
    return [[Override(s.keys, v, s.given_as) for s, v in zip(sweeps, combo, strict=True)]
            for combo in itertools.product(*(s.values for s in sweeps))]


def study_name(base: str, point: Sequence[Override]) -> str:
    """``demo`` and alpha = 0.5 → ``demo-alpha0.5`` (one ``-<field><value>`` per swept field)."""
    return "-".join([base, *(f"{o.keys[-1]}{token(o.value)}" for o in point)])


def sweep_experiments(base: Experiment, sweeps: Sequence[Sweep],
                      fixed: Sequence[str] = ()) -> list[Experiment]:
    """One validated experiment per point of the sweeps' product, each named for its point.

    ``fixed``: the field paths the caller already set (``--set``): sweeping one of them is
    refused (which value would the study have?).
    """
    if not sweeps:
        return [base]
    clash = [s.path for s in sweeps if s.path in fixed]
    if clash:
        raise ConfigError(f"{LABEL} {clash[0]} and --set {clash[0]} both set {clash[0]}: give "
                          "its values in the sweep only")
    out = []
    for point in points(sweeps):
        name = study_name(base.name, point)
        out.append(load_experiment(base, [*point, Override(("name",), name, f"{LABEL} name")],
                                   label=LABEL))
    names = [e.name for e in out]
    twice = [n for n in names if names.count(n) > 1]
    if twice:
        raise ConfigError(f"{LABEL}: two points would share the study name {twice[0]!r} "
                          "(their values read the same in a name); give values that differ "
                          "in letters or digits")
    return out
