"""Errors a user can cause. The CLI prints their message and exits non-zero, without a traceback."""

import errno


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


_OS_FIXES = {
    errno.ENOSPC: "no space left on the device: free space, or give another --out",
    errno.EDQUOT: "disk quota exceeded: free space, or give another --out",
    errno.EROFS: "the file system is read-only: give a writable --out",
    errno.EACCES: "permission denied: fix the permissions, or give another --out",
    errno.EPERM: "operation not permitted: fix the permissions, or give another --out",
    errno.ENOENT: "it does not exist: check the path",
    errno.EIO: "input/output error: check the disk",
}


def os_error_message(err: OSError) -> str:
    """One line for an OSError: the file, the cause and the fix (finished runs are kept)."""
    where = err.filename or "a file"
    if err.filename2:
        where = f"{err.filename} → {err.filename2}"
    cause = _OS_FIXES.get(err.errno or -1, err.strerror or str(err))
    return f"cannot use {where}: {cause}. Finished runs are kept; run the command again"

