"""The shared option validator: one line per bad field, worded the same everywhere."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdfair.errors import ConfigError
from kdfair.options import format_errors, validate_options


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(2, ge=1)


class Opts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(32, ge=8, le=224)
    fraction: float = Field(0.1, gt=0, lt=1)
    mode: Literal["fast", "exact"] = "fast"
    maybe: Literal["a", "b"] | None = None
    name: str = "x"
    inner: Inner = Inner()

    @field_validator("name")
    @classmethod
    def _lower(cls, v: str) -> str:
        if v != v.lower():
            raise ValueError(f"name must be lower case; got {v!r}")
        return v


def _error(options: dict, prefix: str = "dataset") -> str:
    with pytest.raises(ConfigError) as err:
        validate_options(Opts, options, prefix, "dataset 'toy'")
    return str(err.value)


def test_valid_options_none_and_instances():
    assert validate_options(Opts, {"size": 64}, "dataset", "x").size == 64
    assert validate_options(Opts, None, "dataset", "x") == Opts()
    o = Opts(mode="exact")
    assert validate_options(Opts, o, "dataset", "x") is o


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"size": 4}, "  dataset.size: must be an integer between 8 and 224, got 4"),
        ({"size": "big"}, "  dataset.size: must be an integer between 8 and 224, got 'big'"),
        ({"fraction": 1.5},
         "  dataset.fraction: must be a number greater than 0 and less than 1, got 1.5"),
        ({"mode": "slow"}, "  dataset.mode: must be one of fast, exact, got 'slow'"),
        ({"maybe": "c"}, "  dataset.maybe: must be one of a, b, got 'c'"),
        ({"colour": 1},
         "  dataset.colour: unknown option; allowed: size, fraction, mode, maybe, name, inner"),
        ({"name": "X"}, "  dataset.name: name must be lower case; got 'X'"),
        ({"inner": {"depth": 0}},
         "  dataset.inner.depth: must be an integer greater than or equal to 1, got 0"),
        ({"inner": {"wide": 1}}, "  dataset.inner.wide: unknown option; allowed: depth"),
    ],
)
def test_each_bad_field_gets_one_line(options, line):
    msg = _error(options)
    assert msg.splitlines() == ["invalid options for dataset 'toy':", line]


def test_prefix_and_several_errors():
    lines = _error({"size": 4, "mode": "slow"}, prefix="model").splitlines()
    assert lines[1].startswith("  model.size: must be an integer")
    assert lines[2].startswith("  model.mode: must be one of")


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="invalid options for dataset 'toy': expected a mapping"):
        validate_options(Opts, [1, 2], "dataset", "dataset 'toy'")  # type: ignore[arg-type]


def test_format_errors_without_prefix_names_fields_and_top_level():
    class Whole(BaseModel):
        model_config = ConfigDict(extra="forbid")
        opts: Opts = Opts()
        check: bool = True

        @model_validator(mode="after")
        def _checked(self) -> Whole:
            if not self.check:
                raise ValueError("check is off")
            return self

    with pytest.raises(ValidationError) as err:
        Whole.model_validate({"opts": {"size": 300}, "typo": 1})
    text = format_errors(err.value, Whole, "invalid experiment e.yaml:", noun="field")
    assert text.splitlines() == [
        "invalid experiment e.yaml:",
        "  opts.size: must be an integer between 8 and 224, got 300",
        "  typo: unknown field; allowed: opts, check",
    ]
    with pytest.raises(ValidationError) as err:
        Whole.model_validate({"check": False})
    assert format_errors(err.value, Whole, "h", noun="field").splitlines()[1:] == [
        "  (top level): check is off"]
