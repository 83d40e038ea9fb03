"""Overrides of an experiment's fields: ``distill.alpha=0.5``, ``seeds=[0,1,2]``.

An override is ``DOTTED.PATH=VALUE``; the value is parsed as YAML (safe and bounded:
``kdfair.reading``), so ``0.5`` is a number, ``[0,1,2]`` a list, ``true`` a bool, ``cpu`` a
string. An ``Override`` holds one already parsed (path, value) and how its caller wrote it
(``given_as``), so that a message can quote what the user typed. Overrides are applied, in
order, to the experiment as a plain mapping, which is then validated once, like a file
(``config.load_experiment``): the experiment a study records in its store is the effective one.

``label`` names the overrides in messages; each caller passes its own word for them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from kdfair.errors import ConfigError
from kdfair.reading import ReadError, load_yaml

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
LABEL = "overrides"  # what the overrides are called where the caller gives no word


@dataclass(frozen=True)
class Override:
    """One field set: its keys, its value, and how the caller wrote it ("" = ``path=value``)."""

    keys: tuple[str, ...]
    value: Any
    given_as: str = ""

    @property
    def path(self) -> str:
        return ".".join(self.keys)

    def text(self) -> str:
        """``path=value``, the value as YAML."""
        value = yaml.safe_dump(self.value, default_flow_style=True).strip()
        return f"{self.path}={value.removesuffix('...').strip()}"


Overrides = Sequence[str | Override] | Mapping[str, Any]


def parse_override(text: str, label: str = LABEL) -> tuple[list[str], Any]:
    """``"distill.alpha=0.5"`` → ``(["distill", "alpha"], 0.5)``; a ConfigError says what is off."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"{label} {text!r}: expected DOTTED.PATH=VALUE, e.g. distill.alpha=0.5")
    try:  # bounded: an alias bomb is refused, not expanded
        shown = repr(raw) if len(raw) <= 80 else f"of {len(raw)} characters"
        value = load_yaml(raw, f"{label} {path}: the value {shown}") if raw.strip() else None
    except ReadError as err:
        raise ConfigError(str(err)) from None
    return split_path(path, label), value


def split_path(path: str, label: str = LABEL) -> list[str]:
    """A dotted path as its keys; every key is a plain identifier."""
    keys = path.split(".")
    bad = [k for k in keys if not _KEY.match(k)]
    if bad:
        raise ConfigError(f"{label} {path}: {bad[0]!r} is not a field name (dotted paths of "
                          "letters, digits, _ and -, e.g. teacher.train.lr)")
    return keys


def as_overrides(overrides: Overrides, label: str = LABEL) -> list[Override]:
    """Overrides given as ``["a.b=1", Override(…), …]`` or ``{"a.b": 1, …}``, parsed."""
    if isinstance(overrides, Mapping):
        return [Override(tuple(split_path(str(k), label)), v) for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise ConfigError(f"{label}: give a list of 'path=value' strings or a mapping "
                          f"{{path: value}}, not one string ({overrides!r})")
    return [o if isinstance(o, Override) else _parsed(o, label) for o in overrides]


def _parsed(text: str, label: str) -> Override:
    keys, value = parse_override(text, label)
    return Override(tuple(keys), value)


def apply_overrides(data: Mapping[str, Any], overrides: Overrides,
                    label: str = LABEL) -> dict[str, Any]:
    """A copy of ``data`` with every override set; missing (or null) mappings on the way are
    created, a non-mapping on the way is an error naming the path."""
    out = copy.deepcopy(dict(data))
    for o in as_overrides(overrides, label):
        node: dict[str, Any] = out
        for depth, key in enumerate(o.keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(o.keys[: depth + 1])
                raise ConfigError(f"{o.given_as or f'{label} {o.path}'}: {where} is a "
                                  f"{type(child).__name__} ({child!r}), not a section with fields")
            node = child
        node[o.keys[-1]] = o.value
    return out


def describe(overrides: Overrides, label: str = LABEL) -> str:
    """How the overrides read in an error's source: each as its caller wrote it
    (``given_as``), else ``<label> a.b=1``."""
    return " ".join(o.given_as or f"{label} {o.text()}" for o in as_overrides(overrides, label))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{dotted.path: value}`` (lists and empty mappings kept whole)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(dotted path, old value, new value) of every field that differs between two nested
    mappings, values as compact YAML (``unset`` where one lacks the field)."""
    a, b = flatten(old), flatten(new)

    def text(flat: dict[str, Any], path: str) -> str:
        if path not in flat:
            return "unset"
        return yaml.safe_dump(flat[path], default_flow_style=True,
                              width=1 << 16).strip().removesuffix("...").strip()

    return [(p, text(a, p), text(b, p)) for p in dict.fromkeys([*a, *b])
            if text(a, p) != text(b, p)]

