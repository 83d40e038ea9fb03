"""The analysis' view of a run store — kept for imports; the code lives in :mod:`kdfair.store`
(one store module for training and analysis)."""

from kdfair.store.index import (
    ROLE_LABELS,
    ROLES,
    CorruptRun,
    RunInfo,
    StudyIndex,
    failure_records,
    open_store,
    read_labels,
    read_logits,
    read_predictions,
)

Store = StudyIndex  # the former name

__all__ = ["CorruptRun", "ROLES", "ROLE_LABELS", "RunInfo", "Store", "StudyIndex",
           "failure_records", "open_store", "read_labels", "read_logits", "read_predictions"]
