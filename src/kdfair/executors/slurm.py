"""The SLURM executor: each phase's bundles as a job array through submitit (``SlurmExecutor``),
with the checks made before anything is submitted, and the job each node runs (``BundleJob``).

submitit pickles ``BundleJob``: it stays importable as ``kdfair.executors.slurm.BundleJob`` (and
``kdfair.executors.BundleJob``).
"""

from __future__ import annotations

import json
import logging
import shlex
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdfair.config import Experiment, SlurmConfig, experiment_from_dict
from kdfair.data import registry as data_registry
from kdfair.data.base import SplitData
from kdfair.errors import SETTING
from kdfair.executors import slurm_requeue as requeue
from kdfair.executors.slurm_queue import (
    _HOPELESS,
    JobState,
    Partition,
    SlurmError,
    _slurm,
    _squeue,
    partitions,
    poll,
    submitted_jobs,
)
from kdfair.executors.slurm_view import SlurmView, _QuietView
from kdfair.executors.split import split_bundles
from kdfair.models import registry as model_registry
from kdfair.progress import LineReporter
from kdfair.runner import teacher_finished, train_runs
from kdfair.spec import RunSpec
from kdfair.store import ResultsDir
from kdfair.store.files import inside

log = logging.getLogger("kdfair")


# --- the job a cluster node runs --------------------------------------------------------------


class BundleJob:
    """Train some runs of a study into its store: what each SLURM job calls.

    Picklable (the experiment travels as JSON) and checkpointable: a job that is preempted or
    times out is requeued by submitit with the same runs, and skips those already in the store.
    """

    def __init__(self, experiment: dict[str, Any], out: str, specs: list[dict[str, Any]],
                 data_root: str | None = None, threads: int | None = None):
        self.experiment, self.out, self.specs = experiment, out, list(specs)
        self.data_root, self.threads = data_root, threads

    @property
    def run_ids(self) -> list[str]:
        return [s["run_id"] for s in self.specs]

    def __call__(self) -> dict[str, Any]:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        exp = experiment_from_dict(self.experiment, "(SLURM job)")
        store = ResultsDir(self.out)
        before = {r for r in self.run_ids if store.check(r, deep=False).state == "done"}

        def left() -> int:
            return sum(store.check(r, deep=False).state != "done" for r in self.run_ids)

        requeue.install(left, lambda: len(self.run_ids) - left() - len(before))
        print(f"kdfair {exp.name}: {len(self.specs)} run(s) on {socket.gethostname()} → "
              f"{self.out}", flush=True)
        with LineReporter(len(self.run_ids), len(before), stream=sys.stdout) as reporter:
            train_runs(exp, Path(self.out), [RunSpec.from_json(s) for s in self.specs],
                       data_root=Path(self.data_root) if self.data_root else None,
                       reporter=reporter)
        done = [r for r in self.run_ids if store.is_done(r)]
        return {"host": socket.gethostname(), "done": done,
                "missing": [r for r in self.run_ids if r not in done]}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue with the same runs: the store tells the next attempt what is left."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)



# --- the SLURM executor ------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


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
    partition: Partition | None = None  # the partition jobs go to, once ``start`` checked it
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
                                 f"{SETTING}; partitions: {names}", setting="slurm.partition")
        elif cfg.partition not in parts:
            raise SlurmError(f"unknown SLURM partition {cfg.partition!r}; partitions here: "
                             f"{names}. Fix {SETTING}; nothing was submitted",
                             setting="slurm.partition")
        else:
            part = parts[cfg.partition]
        if not part.up:
            raise SlurmError(f"partition {part.name!r} is not up (sinfo); nothing was submitted")
        if part.time_limit_min and cfg.time > part.time_limit_min:
            raise SlurmError(f"time limit {cfg.time} min exceeds partition {part.name!r}'s "
                             f"limit of {part.time_limit_min} min; lower {SETTING} (jobs "
                             "would wait forever); nothing was submitted", setting="slurm.time")
        gpus = cfg.gpus_for(exp)
        self.partition = part
        refused = self._test_only(gpus)
        if refused and gpus and "gpu" not in part.gres:
            raise SlurmError(
                f"jobs would ask for {gpus} GPU(s) but partition {part.name!r} lists none "
                f"(GRES: {part.gres or 'none'}; sbatch: {refused}); choose a GPU partition, or "
                f"run on CPUs: set {SETTING} to cpu; nothing was submitted", setting="device")
        if refused:
            hint = ""
            if "node configuration" in refused:
                hint = (f"; the jobs ask for more than a node of {part.name!r} has: compare "
                        f"their {cfg.cpus} CPU(s), {gpus} GPU(s)"
                        + (f", {cfg.mem_gb:g} GB of memory" if cfg.mem_gb else "")
                        + f" with `sinfo -p {part.name} -o '%N %c %m %G'`")
            raise SlurmError(f"SLURM refuses these job settings: {refused}{hint}; nothing was "
                             "submitted")
        self._refuse_if_running(exp, out)
        self._started = out

    def _sbatch_params(self, gpus: int) -> dict[str, Any]:
        cfg = self.config
        p: dict[str, Any] = {"partition": self.partition.name if self.partition else
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

    def run_phase(self, exp: Experiment, out: Path, bundles: list[list[RunSpec]],
                  data: SplitData, data_root: Path | None) -> None:
        out = Path(out).resolve()
        self.start(exp, out)
        store = ResultsDir(out)
        by_id = {s.run_id: s for b in bundles for s in b}
        phase = "teachers" if bundles[0][0].role == "teacher" else "students"
        if self.wait:  # students of a teacher that did not finish: nothing to submit
            bundles = [[s for s in b if teacher_finished(store, s)] for b in bundles]
        chunks = split_bundles(bundles, self.config.runs_per_job, lambda s: s.seed)
        if not chunks:
            return
        if self.config.check_store and not self._probed:
            self._probe(exp, out)
        jobs = self._submit(exp, out, chunks, phase, data_root)
        if self.wait:
            self._wait(phase, jobs)
            self._record_failures(store, by_id, jobs)

    def _executor(self, out: Path, gpus: int, name: str, time_min: int | None = None,
                  cpus: int | None = None, dependency: str | None = None) -> Any:
        import submitit

        cfg = self.config
        ex = submitit.AutoExecutor(folder=inside(out, "slurm") / "%j", cluster="slurm",
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

    def _submit(self, exp: Experiment, out: Path, chunks: list[list[RunSpec]], phase: str,
                data_root: Path | None) -> list[JobState]:
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        gpus = self.config.gpus_for(exp)
        dependency = f"afterany:{self._after}" if (self._after and not self.wait) else None
        ex = self._executor(out, gpus, f"kdfair-{exp.name}-{phase}", dependency=dependency)
        exp_json = exp.model_dump(mode="json")
        root = str(Path(data_root).resolve()) if data_root else None
        fns = [BundleJob(exp_json, str(out), [s.to_json() for s in c], root, self.config.cpus)
               for c in chunks]
        try:
            with ex.batch():
                subs = [ex.submit(f) for f in fns]
        except (FailedJobError, FailedSubmissionError, subprocess.CalledProcessError) as err:
            raise SlurmError(f"sbatch refused the {phase}' job array: {str(err).strip()}") from None
        jobs = [JobState(s.job_id, f.run_ids, str(s.paths.stderr), phase=phase, _job=s)
                for s, f in zip(subs, fns, strict=True)]
        self.jobs += jobs
        array = jobs[0].job_id.split("_")[0]
        self._after = array
        rec = {"time": _now(), "phase": phase, "array": array, "dependency": dependency,
               "jobs": [{"job_id": j.job_id, "runs": j.runs, "log": j.log} for j in jobs]}
        inside(out, "slurm").mkdir(parents=True, exist_ok=True)
        with open(inside(out, "slurm", "jobs.jsonl"), "a") as f:
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

    def _record_failures(self, store: ResultsDir, by_id: dict[str, RunSpec],
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
        folder = inside(out, "slurm")  # nothing written through a link
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
                f"directory is not on a file system shared with the compute nodes. Put {SETTING} "
                "on a shared file system (home or project directory, not /tmp or local "
                "scratch); nothing else was submitted", setting="out")
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
    if not data_registry.is_builtin(exp.dataset.name):
        raise SlurmError(f"data set {exp.dataset.name!r} was registered in this Python process "
                         "(kdfair.study or register_dataset); SLURM jobs cannot see it. Use a "
                         "built-in data set from an experiment file, or run locally")
    for role in (exp.teacher, exp.student):
        if not model_registry.is_builtin(role.model.arch):
            raise SlurmError(f"model {role.model.arch!r} was registered in this Python process; "
                             "SLURM jobs cannot see it. Use a built-in architecture, or run "
                             "locally")
