"""Content digests and atomic writes, below every other layer.

The store, the data caches and the audit identify bytes one way (:func:`digest`, over the
arrays' dtype, shape and bytes; :func:`sha256_file`) and replace files all at once
(:func:`atomic_write`), so that a reader never sees half a file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def digest(*items: Any) -> str:
    """SHA-256 (hex) over arrays (their dtype, shape and bytes) and JSON-able values, in order:
    the one fingerprint of arrays (data sets, audits, custom studies)."""
    h = hashlib.sha256()
    for it in items:
        if isinstance(it, np.ndarray):
            a = np.ascontiguousarray(it)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.data)
        else:
            h.update(json.dumps(it, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised while writing ``path`` names it: numpy's short write ("138240
    requested and 72672 written", no errno, no file) is a full disk."""
    try:
        yield
    except OSError as err:
        if err.filename:
            raise
        code = err.errno or (errno.ENOSPC if "requested and" in str(err) else 0)
        raise OSError(code, os.strerror(code) if code else str(err), str(path)) from err


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary sibling, fsync, rename: readers see the old or the new file.

    ``write(tmp)`` writes the content to ``tmp`` (a name of its own: open it, do not let a
    library add a suffix).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with naming(path):
            write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
