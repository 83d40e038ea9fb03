"""Preemption or time-out: what a SLURM job does when it is signalled (submitit's USR2).

submitit decides "timed out" from the wall time alone: past ``min(0.8·limit, limit − 10 min)``
every signal counts as a time-out — with a limit under 10 minutes, from the first second — and
a time-out is requeued at most ``max_num_timeout`` times. Here the decision uses what SLURM does:
it sends the time-limit signal ``signal_lead_s`` (submitit asks for 90 s) before the limit, so a
signal that comes earlier is a preemption. A time-out is requeued too while runs are left and the
attempt finished at least one of them (the store makes a rerun safe; a run longer than the limit
would otherwise be requeued for ever).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["preempted", "timeout"]
SIGNAL_LEAD_S = 90.0  # submitit's default --signal=USR2@90
MARGIN_S = 60.0  # a loaded node delivers late; never mistake a time-out for a preemption


def classify(elapsed_s: float, limit_s: float | None, signal_lead_s: float = SIGNAL_LEAD_S,
             margin_s: float = MARGIN_S) -> Kind:
    """A signal ``elapsed_s`` into a job limited to ``limit_s`` (None: no limit) is a time-out
    only within ``signal_lead_s + margin_s`` of the limit."""
    if limit_s is None or limit_s <= 0:
        return "preempted"
    return "timeout" if elapsed_s >= limit_s - signal_lead_s - margin_s else "preempted"


@dataclass(frozen=True)
class Decision:
    requeue: bool
    reason: str


def decide(kind: Kind, runs_left: int, finished_this_attempt: int) -> Decision:
    """Whether to requeue the job, and why (for its log)."""
    if runs_left == 0:
        return Decision(False, "every run of this job is done")
    if kind == "preempted":
        return Decision(True, f"preempted with {runs_left} run(s) left: requeued")
    if finished_this_attempt > 0:
        return Decision(True, f"time limit reached with {runs_left} run(s) left: requeued (this "
                              f"attempt finished {finished_this_attempt})")
    return Decision(False, f"time limit reached and this attempt finished no run: a run takes "
                           f"longer than the limit; raise `slurm.time` ({runs_left} run(s) left, "
                           "`kdfair run` again resubmits them)")


def job_limit_s(default_min: float | None) -> float | None:
    """The job's time limit in seconds: SLURM's start/end times when set, else submitit's."""
    start, end = os.environ.get("SLURM_JOB_START_TIME"), os.environ.get("SLURM_JOB_END_TIME")
    if start and end and start.isdigit() and end.isdigit():
        return float(int(end) - int(start))
    return float(default_min) * 60 if default_min else None


def install(runs_left: Callable[[], int], finished: Callable[[], int],
            log: Callable[[str], None] = print) -> bool:
    """Put the decision in front of submitit's USR2 handler (call inside the job).

    Returns False when no submitit handler is installed (not run by submitit).
    """
    sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    prev = signal.getsignal(sig) if sig is not None else None
    owner: Any = getattr(prev, "__self__", None)
    delayed = getattr(owner, "_delayed", None)
    if owner is None or delayed is None:
        return False
    started = time.time()
    limit = job_limit_s(getattr(delayed, "_timeout_min", None))

    def handler(signum: int, frame: Any) -> None:
        kind = classify(time.time() - started, limit)
        d = decide(kind, runs_left(), finished())
        log(f"kdfair: signal {signal.Signals(signum).name}: {d.reason}")
        owner.has_timed_out = lambda: kind == "timeout"  # what submitit's handler asks
        if kind == "timeout":  # submitit requeues while its countdown stays >= 0
            delayed._timeout_countdown = max(delayed._timeout_countdown, 1) if d.requeue else 0
        prev(signum, frame)  # type: ignore[misc,operator]

    signal.signal(sig, handler)
    return True
