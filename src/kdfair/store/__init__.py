"""The run store: one module for what training writes and what the analysis reads.

- :class:`ResultsDir` — a study's results directory: write runs atomically, verify them against
  their manifests, move damaged ones aside (``kdfair.store.results``);
- :func:`open_store` → :class:`StudyIndex` — the usable runs for the analysis, and readers of a
  run's arrays that touch only the files they need (``kdfair.store.index``);
- :func:`study_lock` — one writer per study (``kdfair.store.lock``).

Format: docs/store.md.
"""

from kdfair.store.arrays import CorruptRun
from kdfair.store.index import (
    ROLE_LABELS,
    ROLES,
    RunInfo,
    StudyIndex,
    failure_records,
    open_store,
    read_counterfactual_logits,
    read_labels,
    read_logits,
    read_predictions,
)
from kdfair.store.lock import StudyLocked, study_lock
from kdfair.store.results import ResultsDir, RunCheck

__all__ = ["CorruptRun", "ROLES", "ROLE_LABELS", "ResultsDir", "RunCheck", "RunInfo",
           "StudyIndex", "StudyLocked", "failure_records", "open_store",
           "read_counterfactual_logits", "read_labels", "read_logits", "read_predictions",
           "study_lock"]
