"""Errors a user can cause. The CLI prints their message and exits non-zero, without a traceback."""


class KdfairError(Exception):
    """Base class: something the user can fix; the message says what and how."""


class ConfigError(KdfairError):
    """An experiment file or option is invalid."""


class DatasetError(KdfairError):
    """A data set is missing, incomplete or corrupt."""


class StoreError(KdfairError):
    """A results directory cannot be used as asked."""


class RunFailed(KdfairError):
    """A single run failed (e.g. its loss became NaN); the study goes on without it."""
