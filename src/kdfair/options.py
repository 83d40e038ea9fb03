"""Validate option mappings with pydantic models; error messages that name each bad field.

Data loaders, model factories and the experiment file all report invalid settings the same way:
a header line, then one line per problem, ``  <prefix>.<field>: <message>``, where the message is

- for an unknown key: ``unknown option; allowed: a, b, c`` (the fields, in declaration order);
- for a field with numeric bounds (``Field(ge=…, le=…)``, read from the field's metadata):
  ``must be an integer between 8 and 224, got 4`` or ``must be a number greater than 0, got -1``;
- for a ``Literal`` field: ``must be one of a, b, got 'x'``;
- otherwise pydantic's message, without its ``Value error, `` prefix.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from kdfair.errors import ConfigError
from kdfair.suggest import alternatives, close_matches

M = TypeVar("M", bound=BaseModel)

# error types whose own message says more than the field's bounds or choices would
_OWN_MESSAGE = {"value_error", "assertion_error", "missing"}


def validate_options(
    model: type[M], options: Mapping[str, Any] | M | None, prefix: str, owner: str
) -> M:
    """``options`` validated with ``model`` (an instance passes through; None means defaults).

    Raises ConfigError headed ``invalid options for <owner>:`` with a line per bad field,
    ``  <prefix>.<field>: <message>`` (see the module docstring).
    """
    if isinstance(options, model):
        return options
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"invalid options for {owner}: expected a mapping, "
                          f"got {type(options).__name__}")
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as err:
        raise invalid(err, model, f"invalid options for {owner}:", prefix) from None


def problems(err: ValidationError, model: type[BaseModel], prefix: str = "",
             noun: str = "option") -> list[tuple[str, str]]:
    """(``<prefix>.<loc>``, message) per error of ``model``'s validation; "" is the whole model.

    ``noun`` names an unknown key (``unknown option`` / ``unknown field``).
    """
    return [(".".join([prefix, *map(str, e["loc"])] if prefix else map(str, e["loc"])),
             error_message(e, model, noun)) for e in err.errors()]


def invalid(err: ValidationError, model: type[BaseModel], header: str, prefix: str = "",
            noun: str = "option") -> ConfigError:
    """The ConfigError for a failed validation: ``header`` and a line per problem, the
    problems kept as data (``ConfigError.problems``)."""
    return ConfigError.listing(header, problems(err, model, prefix, noun))


def format_errors(
    err: ValidationError, model: type[BaseModel], header: str, prefix: str = "",
    noun: str = "option",
) -> str:
    """``header`` and a line ``  <prefix>.<loc>: <message>`` per error of ``model``'s validation
    (``(top level)`` for an error of the whole model)."""
    return str(invalid(err, model, header, prefix, noun))


def error_message(e: Mapping[str, Any], model: type[BaseModel], noun: str = "option") -> str:
    """The message of one pydantic error dict ``e`` raised validating ``model``."""
    loc = tuple(e["loc"])
    if e["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        if parent is None:  # pragma: no cover - extra keys are reported on models
            return f"unknown {noun}"
        near = _near(model, loc)
        return (f"unknown {noun}; allowed: {', '.join(parent.model_fields)}"
                + (f"; did you mean {alternatives(near)}?" if near else ""))
    if e["type"] in ("model_type", "dict_type"):
        return f"expected a mapping (key: value pairs), got {e.get('input')!r}"
    field = _field_at(model, loc)
    if field is not None and e["type"] not in _OWN_MESSAGE:
        got = f"got {e.get('input')!r}"
        choices = _choices(field.annotation)
        if choices and e["type"] == "literal_error":
            return f"must be one of {', '.join(map(str, choices))}, {got}"
        bounds = _bounds(field)
        if bounds:
            kind = "an integer" if _unwrap(field.annotation) is int else "a number"
            return f"must be {kind} {bounds}, {got}"
    return str(e["msg"]).removeprefix("Value error, ")


def _bounds(field: FieldInfo) -> str:
    """``between 8 and 224``, ``greater than 0 and less than 1``, … from the field's metadata."""
    ge = gt = le = lt = None
    for m in field.metadata:
        if isinstance(m, at.Ge):
            ge = m.ge
        elif isinstance(m, at.Gt):
            gt = m.gt
        elif isinstance(m, at.Le):
            le = m.le
        elif isinstance(m, at.Lt):
            lt = m.lt
    if ge is not None and le is not None:
        return f"between {ge} and {le}"
    parts = [f"{words} {v}" for words, v in (("greater than or equal to", ge), ("greater than", gt),
                                             ("less than or equal to", le), ("less than", lt))
             if v is not None]
    return " and ".join(parts)


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``X | None``; anything else unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _choices(annotation: Any) -> tuple[Any, ...]:
    ann = _unwrap(annotation)
    return get_args(ann) if get_origin(ann) is Literal else ()


def _as_model(annotation: Any) -> type[BaseModel] | None:
    ann = _unwrap(annotation)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _field_at(model: type[BaseModel], loc: Sequence[Any]) -> FieldInfo | None:
    """The field an error location points at, through nested models; None if it is not one."""
    parent = _model_at(model, loc[:-1]) if loc else None
    if parent is None or not isinstance(loc[-1], str):
        return None
    return parent.model_fields.get(loc[-1])


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of ``model`` as a dotted path, nested models' fields included."""
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        inner = _as_model(field.annotation)
        if inner is not None:
            out += field_paths(inner, f"{prefix}{name}.")
    return out


def _near(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The fields an unknown key at ``loc`` may have meant: the closest beside it, else the
    closest anywhere in ``model`` by full path (``learning_rate`` → ``teacher.train.lr``)."""
    parent = _model_at(model, loc[:-1])
    prefix = "".join(f"{k}." for k in loc[:-1])
    beside = close_matches(str(loc[-1]), list(parent.model_fields), 2) if parent else []
    return ([prefix + name for name in beside]
            or close_matches(".".join(map(str, loc)), field_paths(model)))


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    cur: type[BaseModel] | None = model
    for part in loc:
        field = cur.model_fields.get(part) if isinstance(part, str) else None
        cur = _as_model(field.annotation) if field is not None else None
        if cur is None:
            return None
    return cur
