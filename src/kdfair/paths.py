"""Where kdfair keeps generated data (cache) by default."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$KDFAIR_CACHE``, else ``~/.cache/kdfair``."""
    d = Path(os.environ.get("KDFAIR_CACHE") or Path.home() / ".cache" / "kdfair")
    d.mkdir(parents=True, exist_ok=True)
    return d
