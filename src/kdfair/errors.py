"""Errors a user can cause. The CLI prints their message and exits non-zero, without a traceback.

Messages speak the words of the layer that raises them: an experiment's field paths
(``dataset.name``) and the arguments of ``kdfair.run`` (``out``, ``data_root``), never a
command-line flag. Where the fix is one such setting, the error carries it (``setting``) and its
message marks where it is named with ``SETTING``; the layer that knows the user's words names it
there (``KdfairError.worded``): the command line as its flag, Python as the setting itself.

This module imports nothing of kdfair (nor torch): the command line's help loads it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence

SETTING = "{setting}"  # where a message names its setting; KdfairError.worded fills it in


def as_code(setting: str) -> str:
    """A setting as Python names it: `` `out` ``, `` `slurm.partition` ``."""
    return f"`{setting}`"


class KdfairError(Exception):
    """Base class: something the user can fix; the message says what and how.

    ``setting``: the experiment field or ``kdfair.run`` argument that fixes it, named where the
    message holds ``SETTING``.
    """

    def __init__(self, message: str = "", *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

    @property
    def template(self) -> str:
        """The message as raised, ``SETTING`` not yet filled in: what a layer that adds to the
        message re-raises (with the same ``setting``), leaving the wording to the caller."""
        return str(self.args[0]) if self.args else ""

    def worded(self, name: Callable[[str], str] = as_code) -> str:
        """The message, its setting named by ``name`` (e.g. the command-line flag for it)."""
        text = self.template
        return text.replace(SETTING, name(self.setting)) if self.setting else text

    def __str__(self) -> str:
        return self.worded()


class ConfigError(KdfairError):
    """An experiment file or option is invalid.

    ``problems``: (dotted field path, what is wrong) per bad field when the message lists them
    under a header (``ConfigError.listing``), so that a caller with its own names for the
    fields (``kdfair.study``'s parameters) can list them in those.
    """

    def __init__(self, message: str = "", *, setting: str | None = None,
                 problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message, setting=setting)
        self.problems = tuple(problems)

    @classmethod
    def listing(cls, header: str, problems: Sequence[tuple[str, str]]) -> ConfigError:
        """``header``, then a line ``  <path>: <what>`` per problem."""
        lines = [header, *(f"  {path or '(top level)'}: {what}" for path, what in problems)]
        return cls("\n".join(lines), problems=problems)


class DatasetError(KdfairError):
    """A data set is missing, incomplete or corrupt."""


class StoreError(KdfairError):
    """A results directory cannot be used as asked."""


class RunFailed(KdfairError):
    """A single run failed (e.g. its loss became NaN); the study goes on without it."""


_OS_FIXES = {
    errno.ENOSPC: f"no space left on the device: free space, or give another {SETTING}",
    errno.EDQUOT: f"disk quota exceeded: free space, or give another {SETTING}",
    errno.EROFS: f"the file system is read-only: give a writable {SETTING}",
    errno.EACCES: f"permission denied: fix the permissions, or give another {SETTING}",
    errno.EPERM: f"operation not permitted: fix the permissions, or give another {SETTING}",
    errno.ENOENT: "it does not exist: check the path",
    errno.EIO: "input/output error: check the disk",
}


def os_error(err: OSError) -> StoreError:
    """An OSError as one line: the file, the cause and the fix (finished runs are kept); where
    the fix is another results directory, its setting is ``out``."""
    where = err.filename or "a file"
    if err.filename2:
        where = f"{err.filename} → {err.filename2}"
    cause = _OS_FIXES.get(err.errno or -1, err.strerror or str(err))
    return StoreError(f"cannot use {where}: {cause}. Finished runs are kept; run the command "
                      "again", setting="out" if SETTING in cause else None)
