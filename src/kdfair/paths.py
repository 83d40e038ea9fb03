"""Where kdfair keeps generated data (cache) by default, and which names may become paths."""

from __future__ import annotations

import os
import re
from pathlib import Path

# one path component: letters, digits, '_', '-', '.', not starting with a dot (so never '.',
# '..' or hidden, never a separator) — experiment names, run ids, attribute file names
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def is_safe_name(name: object) -> bool:
    """Whether ``name`` is one harmless path component (:data:`SAFE_NAME`)."""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def cache_dir() -> Path:
    """``$KDFAIR_CACHE``, else ``~/.cache/kdfair``."""
    d = Path(os.environ.get("KDFAIR_CACHE") or Path.home() / ".cache" / "kdfair")
    d.mkdir(parents=True, exist_ok=True)
    return d
