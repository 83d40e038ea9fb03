"""kdfair: measure what knowledge distillation leaves behind — class-wise bias, group fairness and
individual fairness of distilled students across temperatures, against teacher and non-distilled
student."""

from kdfair.api import (
    analyze,
    audit,
    export_model,
    load_experiment,
    load_model,
    report,
    results_dir,
    run,
    study,
)

__all__ = ["audit", "analyze", "export_model", "load_experiment", "load_model", "report",
           "results_dir", "run", "study"]
__version__ = "0.1.0"
