"""kdfair: measure what knowledge distillation leaves behind — class-wise bias, group fairness and
individual fairness of distilled students across temperatures, against teacher and non-distilled
student.

The API's functions (``kdfair.run``, ``kdfair.study``, …) are ``kdfair.api``'s, imported on first
use: importing kdfair, or any of its light modules (the command line's ``--help``), does not load
torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["audit", "analyze", "compare", "export_model", "load_experiment", "load_exported",
           "load_model", "plan", "predict", "report", "results_dir", "run", "study"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kdfair import api

        return getattr(api, name)
    raise AttributeError(f"module 'kdfair' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
