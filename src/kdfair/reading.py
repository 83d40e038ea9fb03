"""Bounded reading of what a user or a file gives: YAML and JSON that cannot hang the machine.

Every experiment file, predictions file, ``--set`` value and store JSON file is read here:

- only regular files are opened (never a device, FIFO or socket: ``/dev/zero`` would never end),
  and at most ``limit`` bytes of them;
- YAML is parsed with ``yaml.SafeLoader`` and refused when its aliases would expand it past
  :data:`MAX_YAML_NODES` nodes (a "billion laughs" document is a few hundred bytes);
- errors name the file and the cause, never echo its content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_YAML_BYTES = 1 << 20  # an experiment or predictions file: far below a MiB
MAX_YAML_NODES = 100_000  # nodes after expanding aliases
MAX_JSON_BYTES = 64 << 20  # store JSON (data.json of 20 000 class names: ~1 MB)


class ReadError(ValueError):
    """A file or text that cannot be read safely; the message names it and the cause."""


def read_bytes(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises ReadError for anything else (a device, FIFO or directory; a larger file) and
    OSError (with the file name) when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReadError(f"{path} is not a regular file (a device, pipe or directory); "
                            "give a file")
        if st.st_size > limit:
            raise ReadError(f"{path} has {st.st_size} bytes, more than the {limit} this file "
                            "may hold")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ReadError(f"{path} has more than the {limit} bytes this file may hold")
        return data
    finally:
        os.close(fd)


def read_text(path: str | Path, limit: int) -> str:
    """:func:`read_bytes` decoded as UTF-8 (ReadError naming the file when it is not)."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ReadError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8") \
            from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents whose aliases expand past :data:`MAX_YAML_NODES`."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise ReadError(f"its aliases (*name) expand to more than {MAX_YAML_NODES} values; "
                            "write the values out instead")
        return node


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded (shared nodes counted once per use)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_YAML_NODES + 1  # a recursive alias expands without end
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = size = min(size, MAX_YAML_NODES + 1)
    return size


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``, bounded; ReadError ``"<where> is not valid YAML (…)"`` /
    ``"<where>: …"`` when it cannot be."""
    if len(text) > MAX_YAML_BYTES:
        raise ReadError(f"{where}: {len(text)} characters, more than the {MAX_YAML_BYTES} a "
                        "YAML document may hold")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader
    except ReadError as err:
        raise ReadError(f"{where}: {err}") from None
    except RecursionError:  # '[[[[…' a few thousand deep: the parser recurses per level
        raise ReadError(f"{where}: nested too deeply (lists or mappings inside each other "
                        "thousands of times); flatten it") from None
    except yaml.YAMLError as err:
        raise ReadError(f"{where} is not valid YAML ({_yaml_problem(err)})") from None


def load_yaml_file(path: str | Path) -> Any:
    """A YAML file (regular, UTF-8, at most :data:`MAX_YAML_BYTES`), bounded like load_yaml."""
    return load_yaml(read_text(path, MAX_YAML_BYTES), str(path))


def _yaml_problem(err: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without the snippet of the document."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{err.problem or err.context or 'cannot parse'}{where}"
    return type(err).__name__
