"""Executors: where a study's bundles train. Local (in this process, or one worker per GPU) and
SLURM (one job per bundle, a job array per phase, through submitit).

Every executor implements ``runner.Executor``: ``run_phase`` trains the bundles of one phase
(teachers, then students). The run store is the truth: jobs write finished runs into the results
directory exactly as a local run does, so what is done, missing or failed is read from there, and
running the same command again submits only what is missing.

SLURM files live in ``<results>/slurm/``: ``jobs.jsonl`` (one line per job array: its phase,
job ids, runs and log paths) and one folder per job with submitit's pickles and logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kdfair.errors import ConfigError, KdfairError

if TYPE_CHECKING:
    from kdfair.config import Experiment
    from kdfair.data.base import SplitData
    from kdfair.spec import RunSpec
    from kdfair.train.engine import Reporter

log = logging.getLogger("kdfair")

EXECUTORS = ("local", "slurm")


class SlurmError(KdfairError):
    """The SLURM cluster cannot run the study as asked (partition, limits, shared directory…)."""


# --- configuration ------------------------------------------------------------------------------


def parse_minutes(value: str | int | float) -> int:
    """A SLURM time limit in minutes: 90, "90", "1:30:00", "2-00:00:00", "30:00" (MM:SS)."""
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip().lower()
    if s in ("infinite", "unlimited"):
        return 0
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if not m:
        raise ValueError(f"not a SLURM time: {value!r} (give minutes, H:MM:SS or D-HH:MM:SS)")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        return days * 1440 + a * 60 + (b or 0) + ((c or 0) + 59) // 60
    if c is not None:  # H:M:S
        return a * 60 + b + (c + 59) // 60  # type: ignore[operator]
    if b is not None:  # M:S
        return a + (b + 59) // 60
    return a  # type: ignore[return-value]


class SlurmConfig(BaseModel):
    """Where and how the jobs of a study run: the ``slurm:`` section of an experiment file.

    Every field can be overridden on the command line (``--slurm-partition`` …).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = None  # None: the cluster's default partition
    time: int = Field(120, ge=1)  # time limit per job in minutes (also "H:MM:SS", "D-HH:MM:SS")
    gpus: int | None = Field(None, ge=0)  # per job; None: 1, or 0 when the device is "cpu"
    cpus: int = Field(8, ge=1)  # CPU cores per job (also torch's thread count in the job)
    mem_gb: float | None = Field(None, gt=0)  # memory per job; None: the partition's default
    account: str | None = None
    runs_per_job: int | None = Field(None, ge=1)  # None: one job per bundle
    max_parallel: int | None = Field(None, ge=1)  # at most this many jobs of an array at once
    options: dict[str, str | int | float | bool] = {}  # more sbatch options: {qos: high, …}
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load, source venv)
    python: str | None = None  # the interpreter on the nodes; None: this one (sys.executable)
    check_store: bool = True  # test-write the results directory from a job before submitting

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> int:
        return parse_minutes(v)

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        reserved = {"array", "output", "error", "dependency", "job-name", "job_name", "wrap"}
        bad = sorted(k for k in v if k.replace("_", "-") in reserved or k.startswith("-"))
        if bad:
            raise ValueError(f"options {bad} are set by kdfair itself; give sbatch option names "
                             "without dashes, e.g. {qos: high, constraint: a100}")
        return v

    def gpus_for(self, exp: Experiment) -> int:
        if self.gpus is not None:
            return self.gpus
        return 0 if exp.device == "cpu" else 1


def slurm_config(section: dict[str, Any] | SlurmConfig | None = None,
                 **overrides: Any) -> SlurmConfig:
    """The experiment file's ``slurm:`` section with command-line overrides (None = not given)."""
    base = section.model_dump() if isinstance(section, SlurmConfig) else dict(section or {})
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "options":
            base["options"] = {**base.get("options", {}), **value}
        else:
            base[key] = value
    try:
        return SlurmConfig.model_validate(base)
    except ValidationError as err:
        lines = ["invalid SLURM settings (experiment file's slurm: section or --slurm-* flags):"]
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "slurm"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown field; allowed: {', '.join(SlurmConfig.model_fields)}"
            lines.append(f"  slurm.{loc}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """``--slurm-option KEY=VALUE`` pairs as a dict (a bare KEY is a flag: ``--exclusive``)."""
    out: dict[str, Any] = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"--slurm-option {p!r}: give KEY=VALUE, e.g. qos=high")
        out[key] = value if eq else True
    return out


def load_experiment_and_slurm(path: str | Path) -> tuple[Experiment, dict[str, Any] | None]:
    """An experiment file (or preset) and its optional ``slurm:`` section, validated apart."""
    import yaml

    from kdfair.config import Experiment, experiment_from_dict, load_experiment
    from kdfair.presets import preset_path

    p = Path(path)
    if not p.exists():
        p = preset_path(str(path)) or p
    if not p.exists():
        return load_experiment(path), None  # raises the usual "no experiment file" error
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        return load_experiment(p), None  # raises the usual YAML error
    if not isinstance(data, dict):
        return load_experiment(p), None
    if "slurm" in Experiment.model_fields:  # the config owns the section
        exp = experiment_from_dict(data, str(p))
        section = getattr(exp, "slurm", None)
        if isinstance(section, BaseModel):
            section = section.model_dump()
        return exp, section
    section = data.pop("slurm", None)
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"invalid experiment {p}:\n  slurm: expected a mapping of SLURM "
                          "settings (partition, time, gpus, cpus, mem_gb, account, options…)")
    return experiment_from_dict(data, str(p)), section


# --- splitting bundles into jobs -----------------------------------------------------------------


def split_bundles(bundles: list[list[str]], per_job: int | None,
                  seed_of: Callable[[str], int] | None = None) -> list[list[str]]:
    """Each bundle as jobs of at most ``per_job`` runs, runs of one seed kept together.

    A run's result depends on its spec alone, never on what it trains with, so any split gives
    the same predictions; keeping a seed's runs together shares its teacher's work.
    """
    if not per_job:
        return [list(b) for b in bundles if b]
    out: list[list[str]] = []
    for b in bundles:
        order = sorted(b, key=lambda r: (seed_of(r) if seed_of else 0, b.index(r)))
        out += [order[i : i + per_job] for i in range(0, len(order), per_job)]
    return out


def split_evenly(bundles: list[list[str]], parts: int,
                 seed_of: Callable[[str], int] | None = None) -> list[list[str]]:
    """Split the runs of a phase into about ``parts`` jobs (for one worker per GPU)."""
    total = sum(len(b) for b in bundles)
    if parts <= 1 or total <= len(bundles):
        return [list(b) for b in bundles if b]
    return split_bundles(bundles, max(1, -(-total // parts)), seed_of)


# --- the job a cluster node runs --------------------------------------------------------------


class _LogReporter:
    """Plain log lines in a job's output: one per epoch and per finished run."""

    def start(self, run_id: str, epochs: int) -> None:
        print(f"{run_id}: training, {epochs} epoch(s)", flush=True)

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        print(f"{run_id} epoch {epoch}: loss {loss:.4f}  {images_per_s:,.0f} img/s", flush=True)

    def finish(self, run_id: str, status: str) -> None:
        print(f"{run_id}: {status}", flush=True)


class BundleJob:
    """Train some runs of a study into its store: what each SLURM job calls.

    Picklable (the experiment travels as JSON) and checkpointable: a job that is preempted or
    times out is requeued by submitit with the same runs, and skips those already in the store.
    """

    def __init__(self, experiment: dict[str, Any], out: str, run_ids: list[str],
                 data_root: str | None = None, threads: int | None = None):
        self.experiment, self.out, self.run_ids = experiment, out, list(run_ids)
        self.data_root, self.threads = data_root, threads

    def __call__(self) -> dict[str, Any]:
        import torch

        from kdfair.config import experiment_from_dict
        from kdfair.runner import train_runs
        from kdfair.store import RunStore

        if self.threads:
            torch.set_num_threads(self.threads)
        exp = experiment_from_dict(self.experiment, "(SLURM job)")
        print(f"kdfair {exp.name}: {len(self.run_ids)} run(s) on {socket.gethostname()} → "
              f"{self.out}", flush=True)
        train_runs(exp, Path(self.out), self.run_ids,
                   data_root=Path(self.data_root) if self.data_root else None,
                   reporter=_LogReporter())
        store = RunStore(self.out)
        done = [r for r in self.run_ids if store.is_done(r)]
        return {"host": socket.gethostname(), "done": done,
                "missing": [r for r in self.run_ids if r not in done]}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue with the same runs: the store tells the next attempt what is left."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


# --- talking to SLURM ---------------------------------------------------------------------------

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
        raise SlurmError(f"{args[0]} not found: --executor slurm needs the SLURM commands "
                         "(sbatch, squeue, sacct, sinfo) on PATH; run kdfair on a login node "
                         "of the cluster") from None
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


def poll(jobs: list[JobState], grace_s: float = 60.0) -> None:
    """Update the state of the jobs that have not ended (squeue first, then sacct)."""
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
        if state in _ENDED:
            _end(j, state)
            continue
        result_file = Path(j._job.paths.result_pickle) if j._job is not None else None
        if j._gone_since is None:
            j._gone_since = now
        waited = now - j._gone_since
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


# --- progress --------------------------------------------------------------------------------


class SlurmView(Protocol):
    """Shows what the jobs of a phase are doing while kdfair waits for them."""

    def update(self, phase: str, jobs: list[JobState], note: str = "") -> None: ...


def counts(jobs: list[JobState]) -> dict[str, int]:
    out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for j in jobs:
        out[j.category] += 1
    return out


class RichSlurmView:
    """A live table on a terminal (jobs pending / running / done / failed); lines otherwise."""

    def __init__(self, console: Any = None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.live_mode = self.console.is_terminal
        self._live: Any = None
        self._last: tuple | None = None
        self._phase: str | None = None
        self._line = ""
        self._t0 = time.monotonic()

    def __enter__(self) -> RichSlurmView:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, phase: str, jobs: list[JobState], note: str = "") -> None:
        c = counts(jobs)
        line = (f"{phase}: {c['pending']} pending · {c['running']} running · {c['done']} done · "
                f"{c['failed']} failed")
        if self._live is None:
            key = (phase, tuple(sorted(c.items())), note)
            if key != self._last:
                self._last = key
                self.console.print(f"[{time.monotonic() - self._t0:5.0f}s] {line}"
                                   + (f"  ({note})" if note else ""), highlight=False)
            return
        from rich.table import Table

        if self._phase not in (None, phase):  # the phase before ended: keep its last line
            self.console.print(self._line, highlight=False)
        self._phase, self._line = phase, line
        table = Table(title=line + (f" — {note}" if note else ""), title_justify="left",
                      show_edge=False, pad_edge=False)
        for col in ("job", "state", "runs"):
            table.add_column(col)
        colors = {"pending": "yellow", "running": "cyan", "done": "green", "failed": "red"}
        shown = sorted(jobs, key=lambda j: ("running", "pending", "failed", "done")
                       .index(j.category))[:20]
        for j in shown:
            state = j.state + (f" ({j.reason})" if j.reason and j.reason != "None" else "")
            runs = ", ".join(j.runs[:3]) + (f" +{len(j.runs) - 3}" if len(j.runs) > 3 else "")
            table.add_row(j.job_id, f"[{colors[j.category]}]{state}[/]", runs)
        if len(jobs) > len(shown):
            table.add_row("…", f"{len(jobs) - len(shown)} more", "")
        self._live.update(table)


class _QuietView:
    def update(self, phase: str, jobs: list[JobState], note: str = "") -> None:
        pass


# --- the SLURM executor ------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
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


@dataclass
class SlurmExecutor:
    """Each phase's bundles as one SLURM job array (submitit), one job per bundle.

    With ``wait``, ``run_phase`` returns when every job of the phase has ended, and records the
    runs of failed jobs in the store's ``failed/`` (with the job's state and log). Without it,
    ``run_phase`` submits and returns; the students' array then waits for the teachers' array
    with ``--dependency=afterany``, so the study finishes with no process waiting for it.
    """

    config: SlurmConfig = field(default_factory=SlurmConfig)
    wait: bool = True
    view: SlurmView | None = None
    poll_s: float = 2.0
    jobs: list[JobState] = field(default_factory=list)  # every job this executor submitted
    _partition: Partition | None = None
    _started: Path | None = None
    _probed: bool = False
    _after: str | None = None  # array id the next phase depends on (no-wait)

    @property
    def failed_jobs(self) -> list[JobState]:
        return [j for j in self.jobs if j.category == "failed"]

    # .. checks before anything is written or submitted ..........................................

    def start(self, exp: Experiment, out: Path) -> None:
        """Check the cluster can take the jobs, before the store is touched or a job submitted."""
        out = Path(out).resolve()
        if self._started == out:
            return
        _check_portable(exp)
        cfg = self.config
        parts = partitions()
        if not parts:
            raise SlurmError("sinfo lists no partition: is this a SLURM cluster?")
        names = ", ".join(p.name + (" (default)" if p.default else "") for p in parts.values())
        if cfg.partition is None:
            part = next((p for p in parts.values() if p.default), None)
            if part is None:
                raise SlurmError(f"this cluster has no default partition; name one with "
                                 f"--slurm-partition (or slurm.partition); partitions: {names}")
        elif cfg.partition not in parts:
            raise SlurmError(f"unknown SLURM partition {cfg.partition!r}; partitions here: "
                             f"{names}. Fix --slurm-partition (or slurm.partition in the "
                             "experiment file); nothing was submitted")
        else:
            part = parts[cfg.partition]
        if not part.up:
            raise SlurmError(f"partition {part.name!r} is not up (sinfo); nothing was submitted")
        if part.time_limit_min and cfg.time > part.time_limit_min:
            raise SlurmError(f"time limit {cfg.time} min exceeds partition {part.name!r}'s "
                             f"limit of {part.time_limit_min} min; lower --slurm-time (jobs "
                             "would wait forever); nothing was submitted")
        gpus = cfg.gpus_for(exp)
        self._partition = part
        refused = self._test_only(gpus)
        if refused and gpus and "gpu" not in part.gres:
            raise SlurmError(
                f"jobs would ask for {gpus} GPU(s) but partition {part.name!r} lists none "
                f"(GRES: {part.gres or 'none'}; sbatch: {refused}); choose a GPU partition, or "
                "run on CPUs with --device cpu (or --slurm-gpus 0); nothing was submitted")
        if refused:
            hint = ""
            if "node configuration" in refused:
                hint = (f"; the jobs ask for more than a node of {part.name!r} has: compare "
                        f"--slurm-cpus {cfg.cpus}, --slurm-gpus {gpus}"
                        + (f", --slurm-mem {cfg.mem_gb:g}" if cfg.mem_gb else "")
                        + f" with `sinfo -p {part.name} -o '%N %c %m %G'`")
            raise SlurmError(f"SLURM refuses these job settings: {refused}{hint}; nothing was "
                             "submitted")
        self._refuse_if_running(exp, out)
        self._started = out

    def _sbatch_params(self, gpus: int) -> dict[str, Any]:
        cfg = self.config
        p: dict[str, Any] = {"partition": self._partition.name if self._partition else
                             cfg.partition, "time": cfg.time, "cpus_per_task": cfg.cpus}
        if gpus:
            p["gpus_per_node"] = gpus
        if cfg.mem_gb:
            p["mem"] = f"{int(cfg.mem_gb * 1024)}M"
        if cfg.account:
            p["account"] = cfg.account
        return {k: v for k, v in p.items() if v is not None}

    def _sbatch_flags(self, gpus: int, **override: Any) -> list[str]:
        """The jobs' options as sbatch flags (``override`` replaces some, None drops one)."""
        params = {**self._sbatch_params(gpus), **self.config.options, **override}
        flags = []
        for k, v in params.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                flags.append(flag)
            elif v is not False and v is not None:
                flags.append(f"{flag}={v}")
        return flags

    def _test_only(self, gpus: int) -> str:
        """``sbatch --test-only`` with the jobs' options: why SLURM refuses them, or ""."""
        r = _slurm(["sbatch", "--test-only", *self._sbatch_flags(gpus), "--wrap", "true"])
        return _sbatch_error(r).removeprefix("allocation failure: ") if r.returncode else ""

    def _refuse_if_running(self, exp: Experiment, out: Path) -> None:
        """Never train a run twice: earlier jobs for this directory must have ended."""
        ids = {j["job_id"] for rec in submitted_jobs(out) for j in rec.get("jobs", [])}
        if not ids:
            return
        active = sorted(j for j in _squeue(ids, f"kdfair-{exp.name}-") if j in ids)
        if active:
            arrays = sorted({j.split("_")[0] for j in active})
            raise SlurmError(
                f"{len(active)} SLURM job(s) submitted earlier for {out} are still pending or "
                f"running ({', '.join(active[:5])}{' …' if len(active) > 5 else ''}). Wait for "
                f"them (`kdfair status {out}` shows progress), or cancel them "
                f"(`scancel {' '.join(arrays)}`) and run the same command again: it submits "
                "only what is missing")

    # .. phases ....................................................................................

    def run_phase(self, exp: Experiment, out: Path, bundles: list[list[str]],
                  data: SplitData, data_root: Path | None) -> None:
        from kdfair.runner import plan
        from kdfair.store import RunStore

        out = Path(out).resolve()
        self.start(exp, out)
        store = RunStore(out)
        by_id = {s.run_id: s for s in plan(exp, data.fingerprint)}
        phase = "teachers" if by_id[bundles[0][0]].role == "teacher" else "students"
        if self.wait:  # students of a teacher that did not finish: nothing to submit
            bundles = [[r for r in b if self._teacher_ok(store, by_id[r])] for b in bundles]
        chunks = split_bundles(bundles, self.config.runs_per_job, lambda r: by_id[r].seed)
        if not chunks:
            return
        if self.config.check_store and not self._probed:
            self._probe(exp, out)
        jobs = self._submit(exp, out, chunks, phase, data_root)
        if self.wait:
            self._wait(phase, jobs)
            self._record_failures(store, by_id, jobs)

    def _teacher_ok(self, store: Any, spec: RunSpec) -> bool:
        t = spec.teacher_run_id
        if spec.role != "ds" or t is None or store.is_done(t):
            return True
        store.record_failure(spec, f"its teacher run {t} did not finish")
        return False

    def _executor(self, out: Path, gpus: int, name: str, time_min: int | None = None,
                  cpus: int | None = None, dependency: str | None = None) -> Any:
        import submitit

        cfg = self.config
        ex = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster="slurm",
                                   slurm_python=cfg.python or sys.executable)
        params = self._sbatch_params(gpus)
        extra = dict(cfg.options)
        if dependency:
            extra["dependency"] = dependency
        kwargs: dict[str, Any] = dict(
            name=name, timeout_min=time_min or cfg.time, cpus_per_task=cpus or cfg.cpus,
            slurm_partition=params["partition"], slurm_additional_parameters=extra)
        if gpus:
            kwargs["gpus_per_node"] = gpus
        if cfg.mem_gb:
            kwargs["mem_gb"] = cfg.mem_gb
        if cfg.account:
            kwargs["slurm_account"] = cfg.account
        if cfg.max_parallel:
            kwargs["slurm_array_parallelism"] = cfg.max_parallel
        if cfg.setup:
            kwargs["slurm_setup"] = list(cfg.setup)
        ex.update_parameters(**kwargs)
        return ex

    def _submit(self, exp: Experiment, out: Path, chunks: list[list[str]], phase: str,
                data_root: Path | None) -> list[JobState]:
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        gpus = self.config.gpus_for(exp)
        dependency = f"afterany:{self._after}" if (self._after and not self.wait) else None
        ex = self._executor(out, gpus, f"kdfair-{exp.name}-{phase}", dependency=dependency)
        exp_json = exp.model_dump(mode="json")
        root = str(Path(data_root).resolve()) if data_root else None
        fns = [BundleJob(exp_json, str(out), c, root, self.config.cpus) for c in chunks]
        try:
            with ex.batch():
                subs = [ex.submit(f) for f in fns]
        except (FailedJobError, FailedSubmissionError, subprocess.CalledProcessError) as err:
            raise SlurmError(f"sbatch refused the {phase}' job array: {str(err).strip()}") from None
        jobs = [JobState(s.job_id, c, str(s.paths.stderr), phase=phase, _job=s)
                for s, c in zip(subs, chunks, strict=True)]
        self.jobs += jobs
        array = jobs[0].job_id.split("_")[0]
        self._after = array
        rec = {"time": _now(), "phase": phase, "array": array, "dependency": dependency,
               "jobs": [{"job_id": j.job_id, "runs": j.runs, "log": j.log} for j in jobs]}
        (out / "slurm").mkdir(parents=True, exist_ok=True)
        with open(out / "slurm" / "jobs.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        log.info("submitted %s: job array %s (%d jobs)", phase, array, len(jobs))
        return jobs

    def _wait(self, phase: str, jobs: list[JobState], note: str = "") -> None:
        view = self.view or _QuietView()
        arrays = " ".join(sorted({j.job_id.split("_")[0] for j in jobs}))
        label = f"{phase} (job array {arrays})" if len(jobs) > 1 else f"{phase} (job {arrays})"
        try:
            while True:
                poll(jobs)
                hopeless = sorted({j.reason for j in jobs if j.reason in _HOPELESS})
                hint = f"waiting on: {', '.join(hopeless)}" if hopeless else note
                view.update(label, jobs, hint)
                if all(j.ended for j in jobs):
                    return
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            left = [j.job_id for j in jobs if not j.ended]
            if left:
                print(f"\nthe cluster keeps running {len(left)} job(s) (array {arrays}): "
                      f"`scancel {arrays}` cancels them", file=sys.stderr)
            raise

    def _record_failures(self, store: Any, by_id: dict[str, RunSpec],
                         jobs: list[JobState]) -> None:
        failed = store.failed()
        for j in jobs:
            missing = [r for r in j.runs if not store.is_done(r)]
            if not missing:
                continue
            if j.state == "COMPLETED":  # every run of the job ended: train_runs recorded why
                missing = [r for r in missing if r not in failed]
                if not missing:
                    continue
            why = f"SLURM job {j.job_id} {j.state}" + (f": {j.detail}" if j.detail else "")
            for r in missing:
                store.record_failure(by_id[r], f"{why}; log: {j.log}")

    def _probe(self, exp: Experiment, out: Path) -> None:
        """Submit a small job that writes into the results directory, and check it did.

        A plain shell job with the jobs' partition, account and options (one CPU, no GPU, a
        few minutes), so that it starts soon and fast.
        """
        folder = out / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        target = folder / f"probe-{token}"
        logfile = folder / "check-%j.log"
        script = f"echo {token} > {shlex.quote(str(target))}"
        args = ["sbatch", "--parsable", f"--job-name=kdfair-{exp.name}-check",
                f"--output={logfile}", f"--error={logfile}",
                *self._sbatch_flags(0, time=min(self.config.time, 5), cpus_per_task=1,
                                    mem=None),
                "--wrap", script]
        r = _slurm(args)
        if r.returncode != 0:
            raise SlurmError(f"sbatch refused the check job: {_sbatch_error(r)}; nothing was "
                             "submitted")
        jid = r.stdout.strip().split(";")[0]
        job = JobState(jid, [], str(logfile).replace("%j", jid), phase="check")
        self._wait("check", [job], note=f"a job test-writes {out}")
        found = target.exists() and target.read_text().strip() == token
        target.unlink(missing_ok=True)
        if found:
            self._probed = True
            Path(job.log).unlink(missing_ok=True)
            return
        if job.state == "COMPLETED":
            raise SlurmError(
                f"a job wrote into {out} but this machine does not see the file: the results "
                "directory is not on a file system shared with the compute nodes. Put --out on "
                "a shared file system (home or project directory, not /tmp or local scratch); "
                "nothing else was submitted")
        has_log = Path(job.log).exists()
        raise SlurmError(
            f"a test job (SLURM job {job.job_id}) could not write into {out}: it ended "
            f"{job.state}" + (f" ({job.detail})" if job.detail else "") + ". "
            + (f"Its log: {job.log}. " if has_log else
               f"It left no log in {folder}: the directory is probably not shared with the "
               "compute nodes. ")
            + "The results directory must be writable from the nodes (a shared file system); "
            "nothing else was submitted")


def _sbatch_error(r: subprocess.CompletedProcess) -> str:
    return " ".join(line.removeprefix("sbatch: error: ").strip()
                    for line in (r.stderr or r.stdout).splitlines() if line.strip())


def _check_portable(exp: Experiment) -> None:
    """Jobs start fresh processes: data sets and models must be known by name there."""
    from kdfair.data import registry as data_registry
    from kdfair.models import registry as model_registry

    if exp.dataset.name not in data_registry._BUILTIN:
        raise SlurmError(f"data set {exp.dataset.name!r} was registered in this Python process "
                         "(kdfair.study or register_dataset); SLURM jobs cannot see it. Use a "
                         "built-in data set from an experiment file, or run locally")
    for role in (exp.teacher, exp.student):
        if role.model.arch not in model_registry._BUILTIN:
            raise SlurmError(f"model {role.model.arch!r} was registered in this Python process; "
                             "SLURM jobs cannot see it. Use a built-in architecture, or run "
                             "locally")


# --- local: in this process, or one worker per GPU -----------------------------------------------


def local_executor(exp: Experiment, reporter: Reporter | None = None,
                   on_run: Callable[[RunSpec, str], None] | None = None) -> Any:
    """The default executor: in this process, or one worker process per GPU when several are
    visible and the experiment runs on CUDA."""
    import torch

    from kdfair.runner import LocalExecutor

    n = torch.cuda.device_count() if exp.device != "cpu" else 0
    if n > 1:  # the CPU cores shared out between the workers
        threads = max(1, (os.cpu_count() or n) // n)
        return LocalPoolExecutor([f"cuda:{i}" for i in range(n)], reporter, on_run, threads)
    return LocalExecutor(reporter, on_run)


# the worker's state, set before the pool forks (inherited) or by its initializer
_WORKER: dict[str, Any] = {}


def _init_worker(devices: Any, events: Any, threads: int | None) -> None:
    """Pin this worker to one device before anything touches CUDA."""
    dev = devices.get()
    if dev.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = dev.split(":", 1)[1]
    _WORKER.update(device=dev, events=events)
    if threads:
        import torch

        torch.set_num_threads(threads)


class _QueueReporter:
    def __init__(self, events: Any):
        self.events = events

    def start(self, run_id: str, epochs: int) -> None:
        self.events.put(("start", run_id, epochs))

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float) -> None:
        self.events.put(("epoch", run_id, epoch, loss, images_per_s))

    def finish(self, run_id: str, status: str) -> None:
        self.events.put(("finish", run_id, status))


def _train_in_worker(exp_json: dict[str, Any], out: str, run_ids: list[str],
                     data_root: str | None) -> str:
    from kdfair.config import experiment_from_dict
    from kdfair.runner import train_runs

    exp = experiment_from_dict(exp_json, "(worker)")
    data = _WORKER.get("data")
    events = _WORKER["events"]
    train_runs(exp, Path(out), run_ids, data=data,
               data_root=Path(data_root) if data_root else None,
               reporter=_QueueReporter(events),
               on_run=lambda spec, state: events.put(("run", spec.run_id, state)))
    return _WORKER["device"]


@dataclass
class LocalPoolExecutor:
    """One worker process per device; a phase's runs are split over them.

    Workers are forked (they inherit the loaded data) unless CUDA is already initialised in
    this process, then spawned (each loads the data again).
    """

    devices: list[str]
    reporter: Reporter | None = None
    on_run: Callable[[RunSpec, str], None] | None = None
    threads: int | None = None

    def run_phase(self, exp: Experiment, out: Path, bundles: list[list[str]],
                  data: SplitData, data_root: Path | None) -> None:
        import multiprocessing as mp
        import queue as queue_mod
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
        from concurrent.futures import wait as wait_futures

        import torch

        from kdfair.runner import plan

        by_id = {s.run_id: s for s in plan(exp, data.fingerprint)}
        chunks = split_evenly(bundles, len(self.devices), lambda r: by_id[r].seed)
        fork = sys.platform == "linux" and not torch.cuda.is_initialized()
        ctx = mp.get_context("fork" if fork else "spawn")
        devices, events = ctx.Queue(), ctx.Queue()
        for d in self.devices:
            devices.put(d)
        _WORKER.clear()
        if fork:
            _WORKER["data"] = data
        exp_json = exp.model_dump(mode="json")
        root = str(data_root) if data_root else None
        errors: list[str] = []
        with ProcessPoolExecutor(len(self.devices), mp_context=ctx, initializer=_init_worker,
                                 initargs=(devices, events, self.threads)) as pool:
            pending = {pool.submit(_train_in_worker, exp_json, str(out), c, root): c
                       for c in chunks}
            while pending:
                finished, _ = wait_futures(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                self._drain(events, by_id, queue_mod)
                for fut in finished:
                    chunk = pending.pop(fut)
                    err = fut.exception()
                    if err is not None:
                        if isinstance(err, KdfairError):
                            raise err
                        errors.append(f"{chunk[0]}…: {type(err).__name__}: {err}")
            self._drain(events, by_id, queue_mod)
        _WORKER.clear()
        if errors:
            raise RuntimeError("a worker failed: " + "; ".join(errors))

    def _drain(self, events: Any, by_id: dict[str, RunSpec], queue_mod: Any) -> None:
        while True:
            try:
                ev = events.get_nowait()
            except queue_mod.Empty:
                return
            kind, run_id, *rest = ev
            if kind == "run":
                if self.on_run:
                    self.on_run(by_id[run_id], rest[0])
            elif self.reporter is not None:
                getattr(self.reporter, kind)(run_id, *rest)
