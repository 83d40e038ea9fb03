"""Command-line overrides of an experiment: ``--set distill.alpha=0.5 --set seeds=[0,1,2]``.

An override is ``DOTTED.PATH=VALUE``; the value is parsed with ``yaml.safe_load`` (so ``0.5`` is a
number, ``[0,1,2]`` a list, ``true`` a bool, ``cpu`` a string). Overrides are applied, in order, to
the experiment as a plain mapping, and the result is validated exactly like an experiment file:
the experiment a study records in its store is the effective one.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from kdfair.errors import ConfigError

Overrides = Sequence[str] | Mapping[str, Any]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def parse_override(text: str, label: str = "--set") -> tuple[list[str], Any]:
    """``"distill.alpha=0.5"`` → ``(["distill", "alpha"], 0.5)``; a ConfigError says what is off."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"{label} {text!r}: expected DOTTED.PATH=VALUE, e.g. distill.alpha=0.5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{label} {path}: the value {raw!r} is not valid YAML "
                          f"({str(err).splitlines()[0]})") from None
    return split_path(path, label), value


def split_path(path: str, label: str = "--set") -> list[str]:
    """A dotted path as its keys; every key is a plain identifier."""
    keys = path.split(".")
    bad = [k for k in keys if not _KEY.match(k)]
    if bad:
        raise ConfigError(f"{label} {path}: {bad[0]!r} is not a field name (dotted paths of "
                          "letters, digits, _ and -, e.g. teacher.train.lr)")
    return keys


def as_pairs(overrides: Overrides, label: str = "--set") -> list[tuple[list[str], Any]]:
    """Overrides given as ``["a.b=1", …]`` or ``{"a.b": 1, …}`` as (keys, value) pairs."""
    if isinstance(overrides, Mapping):
        return [(split_path(str(k), label), v) for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise ConfigError(f"{label}: give a list of 'path=value' strings or a mapping "
                          f"{{path: value}}, not one string ({overrides!r})")
    return [parse_override(o, label) for o in overrides]


def apply_overrides(data: Mapping[str, Any], overrides: Overrides,
                    label: str = "--set") -> dict[str, Any]:
    """A copy of ``data`` with every override set; missing (or null) mappings on the way are
    created, a non-mapping on the way is an error naming the path."""
    out = copy.deepcopy(dict(data))
    for keys, value in as_pairs(overrides, label):
        node: dict[str, Any] = out
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(f"{label} {'.'.join(keys)}: {where} is a {type(child).__name__} "
                                  f"({child!r}), not a section with fields")
            node = child
        node[keys[-1]] = value
    return out


def describe(overrides: Overrides, label: str = "--set") -> str:
    """``"--set a.b=1 --set c=2"``: how the overrides read in an error's source (``label``:
    the flag or parameter they came from)."""
    return " ".join(f"{label} {'.'.join(k)}={yaml.safe_dump(v, default_flow_style=True).strip()}"
                    .replace("\n...", "") for k, v in as_pairs(overrides, label))


def override_experiment(exp: Any, overrides: Overrides, source: str = "(experiment)",
                        label: str = "--set") -> Any:
    """``exp`` (an Experiment) with the overrides applied, validated like an experiment file;
    a bad value is reported by its dotted path, headed by the overrides given."""
    from kdfair.config import experiment_from_dict

    if not overrides:
        return exp
    data = apply_overrides(exp.model_dump(mode="json"), overrides, label)
    return experiment_from_dict(data, f"{source} with {describe(overrides, label)}")
