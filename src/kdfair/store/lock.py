"""One writer per study: an advisory lock file in the results directory (``filelock``).

The lock is held by the process that plans and trains (``kdfair run``, ``kdfair.run``,
``kdfair.study``); SLURM jobs and local worker processes, which share the store by design, take
none — saving a run that another job already finished is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from kdfair.errors import SETTING, StoreError

LOCK_NAME = ".lock"


class StudyLocked(StoreError):
    """Another ``kdfair run`` holds the study's lock (and we were told not to wait)."""


@contextmanager
def study_lock(root: Path, wait: bool = True, on_wait: Callable[[str], None] | None = None,
               poll_s: float = 1.0) -> Iterator[None]:
    """Hold ``root/.lock`` for the block. Busy: wait (telling ``on_wait`` once) or, without
    ``wait``, raise StudyLocked at once."""
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root.resolve() / LOCK_NAME
    lock = FileLock(str(path), is_singleton=True)  # re-entrant within a thread: the CLI holds
    # it around the API's own hold
    try:
        lock.acquire(timeout=0)
    except Timeout:
        busy = (f"another `kdfair run` is writing {root} (lock file {path})")
        if not wait:
            raise StudyLocked(f"{busy}; wait for it to end, or run again with {SETTING} left "
                              "out, to wait for it", setting="wait") from None
        if on_wait:
            on_wait(f"{busy}; waiting for it to end (Ctrl-C to stop)…")
        lock.acquire(poll_interval=poll_s)
    try:
        yield
    finally:
        lock.release()
        if created and [p.name for p in root.iterdir()] == [LOCK_NAME]:  # nothing was written
            path.unlink(missing_ok=True)
            root.rmdir()
