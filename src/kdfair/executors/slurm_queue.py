"""Talking to SLURM: the cluster's commands (``sinfo``, ``squeue``, ``sacct``), its partitions, and
the state of a study's jobs (``JobState``, ``poll``, ``job_states``), from the queue, accounting,
submitit's results and the jobs' logs, and from ``<results>/slurm/jobs.jsonl``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdfair.config import parse_minutes
from kdfair.errors import SETTING, KdfairError
from kdfair.reading import MAX_JSON_BYTES, ReadError, read_text


class SlurmError(KdfairError):
    """The SLURM cluster cannot run the study as asked (partition, limits, shared directory…)."""


# terminal states in sacct; anything else (PENDING, RUNNING, REQUEUED, …) is still on its way
_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
          "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "CONFIGURING",
            "RESV_DEL_HOLD"}
_HOPELESS = {"DependencyNeverSatisfied", "PartitionTimeLimit", "PartitionNodeLimit",
             "InvalidAccount", "InvalidQOS", "BadConstraints", "QOSMaxWallDurationPerJobLimit"}


def _slurm(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SlurmError(f"{args[0]} not found: {SETTING} slurm needs the SLURM commands "
                         "(sbatch, squeue, sacct, sinfo) on PATH; run kdfair on a login node "
                         "of the cluster", setting="executor") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(args)}` did not answer within {timeout:.0f} s: is the "
                         "SLURM controller up?") from None


def slurm_available() -> str | None:
    """None when a SLURM cluster answers here, else why not (for tests that need one)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM commands (sinfo, sbatch) on PATH"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%a|%T"], capture_output=True, text=True,
                           timeout=10)
    except (subprocess.TimeoutExpired, OSError) as err:
        return f"sinfo failed: {err}"
    if r.returncode != 0:
        return f"sinfo failed: {r.stderr.strip() or r.returncode}"
    if not any(line.startswith("up|") and ("idle" in line or "mix" in line or "alloc" in line)
               for line in r.stdout.splitlines()):
        return f"no partition is up with a usable node (sinfo: {r.stdout.strip()!r})"
    return None


@dataclass
class Partition:
    name: str
    default: bool
    up: bool
    time_limit_min: int  # 0: no limit
    gres: str


def partitions() -> dict[str, Partition]:
    """The cluster's partitions, from ``sinfo``."""
    r = _slurm(["sinfo", "-h", "-o", "%P|%a|%l|%G"])
    if r.returncode != 0:
        raise SlurmError(f"sinfo failed: {r.stderr.strip()}")
    out: dict[str, Partition] = {}
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 4:
            continue
        name, avail, limit, gres = parts
        default = name.endswith("*")
        name = name.rstrip("*")
        try:
            minutes = parse_minutes(limit)
        except ValueError:
            minutes = 0
        p = out.get(name)
        gres = ",".join(g for g in {gres, p.gres if p else ""} if g and g != "(null)")
        out[name] = Partition(name, default or bool(p and p.default), avail == "up",
                              minutes, gres)
    return out


def _squeue(job_ids: Iterable[str], name_prefix: str = "") -> dict[str, tuple[str, str]]:
    """job id (``123_4`` for array tasks) -> (state, reason), for those still queued (and
    named ``name_prefix…``, where given)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    r = _slurm(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T|%r|%j"])
    if r.returncode != 0:
        if "invalid job id" in r.stderr.lower():  # every one of them has left the queue
            return {}
        raise SlurmError(f"squeue failed: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        jid, state, reason, name = (line.split("|", 3) + ["", "", ""])[:4]
        if name.startswith(name_prefix):
            out[jid.strip()] = (state.strip(), reason.strip())
    return out


def _sacct(job_ids: Iterable[str]) -> dict[str, str] | None:
    """job id -> state from accounting (None: no accounting here)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    r = _slurm(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(arrays)])
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines():
        jid, _, state = line.partition("|")
        if "[" not in jid and state:
            out[jid.strip()] = state.split()[0]
    return out


@dataclass
class JobState:
    """One SLURM job of a study (an array task) and what it trains."""

    job_id: str
    runs: list[str]
    log: str  # stderr of the job (tracebacks); stdout is beside it, ending in .out
    phase: str = ""
    state: str = "PENDING"
    reason: str = ""
    ended: bool = False
    detail: str = ""  # why a job failed, from its log
    _job: Any = field(default=None, repr=False, compare=False)  # submitit's Job
    _gone_since: float | None = field(default=None, repr=False, compare=False)

    @property
    def category(self) -> str:
        """pending, running, done or failed."""
        if self.ended:
            return "done" if self.state == "COMPLETED" else "failed"
        return "pending" if self.state in _PENDING else "running"

    @property
    def stdout(self) -> str:
        return re.sub(r"\.err$", ".out", self.log)


def counts(jobs: list[JobState]) -> dict[str, int]:
    out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for j in jobs:
        out[j.category] += 1
    return out


def _log_tail(path: str, lines: int = 40) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-20000:].splitlines()[-lines:]
    except OSError:
        return []


def _why(job: JobState) -> str:
    """The exception a failed job's log ends with, if any."""
    for line in reversed(_log_tail(job.log)):
        s = line.strip()
        if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b.*", s) or "CANCELLED" in s \
                or "DUE TO TIME LIMIT" in s or "out of memory" in s.lower() \
                or "oom-kill" in s.lower():
            return re.sub(r"^(slurmstepd|srun)[^:]*: error: ", "", s)[:300]
    return ""


def _requeue_in_progress(job: JobState) -> bool:
    """Whether the job's log ends with SLURM cancelling it for a requeue (preemption): it will
    be back in the queue, so its sacct state of the moment is not its end. srun and submitit
    may still log a few lines after SLURM's (seen in CI: 'srun: got SIGCONT', 'srun: error:
    … Terminated'), so the last few lines are read, not only the last."""
    tail = [line for line in _log_tail(job.log, 12) if line.strip()]
    return any("DUE TO JOB REQUEUE" in line for line in tail[-REQUEUE_TAIL:])


REQUEUE_TAIL = 6  # log lines after SLURM's requeue message that may still follow it


def poll(jobs: list[JobState], grace_s: float = 60.0, settle_s: float = 10.0) -> None:
    """Update the state of the jobs that have not ended (squeue first, then sacct).

    A job that left the queue with a failed state ends only once it has stayed out for
    ``settle_s``: a preempted job leaves the queue with a FAILED / CANCELLED attempt for a
    moment before it is queued again (and its log says so; then it waits up to ``grace_s``).
    COMPLETED ends at once."""
    live = [j for j in jobs if not j.ended]
    if not live:
        return
    queue = _squeue(j.job_id for j in live)
    gone = []
    for j in live:
        if j.job_id in queue:
            j.state, j.reason = queue[j.job_id]
            j._gone_since = None
        else:
            gone.append(j)
    if not gone:
        return
    acct = _sacct(j.job_id for j in gone)
    now = time.monotonic()
    for j in gone:
        state = (acct or {}).get(j.job_id)
        if j._gone_since is None:
            j._gone_since = now
        waited = now - j._gone_since
        if state in _ENDED:
            # a requeue brings the job back within moments; one whose log ends with SLURM's
            # requeue message but that stays out (SLURM can kill the restart: "Job credential
            # revoked") has ended after all
            requeuing = waited < grace_s and _requeue_in_progress(j)
            if state == "COMPLETED" or (waited >= settle_s and not requeuing):
                _end(j, state)
            continue
        result_file = Path(j._job.paths.result_pickle) if j._job is not None else None
        # sacct lags the queue by a few seconds; without accounting, trust submitit's result
        if result_file is not None and result_file.exists() and (acct is None or waited > 10):
            _end(j, "COMPLETED" if _succeeded(j) else "FAILED")
        elif waited > (5 if acct is None else grace_s):
            _end(j, "UNKNOWN")
            j.detail = j.detail or "left the queue without a state in sacct"


def _succeeded(j: JobState) -> bool:
    try:
        return j._job.exception() is None
    except Exception:  # noqa: BLE001 - an unreadable result counts as a failure
        return False


def _end(j: JobState, state: str) -> None:
    j.state, j.ended, j.reason = state, True, ""
    if state != "COMPLETED" and not j.detail:
        j.detail = _why(j)



def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file kdfair appends to (bounded: a regular UTF-8 file)."""
    if not path.exists():
        return []
    try:
        text = read_text(path, MAX_JSON_BYTES)
    except ReadError as err:
        raise SlurmError(f"{err}; it lists this study's SLURM jobs: restore it, or remove it "
                         "when none of them is still queued") from None
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def submitted_jobs(results: str | Path) -> list[dict[str, Any]]:
    """Every job array submitted for a results directory (``slurm/jobs.jsonl``), oldest first."""
    return _read_jsonl(Path(results) / "slurm" / "jobs.jsonl")


def job_states(results: str | Path) -> list[JobState]:
    """The SLURM jobs of a results directory with their state now (for ``kdfair status``)."""
    jobs = [JobState(j["job_id"], j["runs"], j["log"], phase=rec.get("phase", ""))
            for rec in submitted_jobs(results) for j in rec.get("jobs", [])]
    if jobs:
        for j in jobs:
            j._gone_since = -1e9  # what left the queue long ago is not waited for
        poll(jobs, grace_s=0)
    return jobs

