"""Executors: where a study's bundles train. Local (in this process, or one worker per GPU) and
SLURM (one job per bundle, a job array per phase, through submitit).

Every executor implements ``base.Executor``: ``start`` checks what it can before the store is
touched, ``run_phase`` trains the bundles (lists of ``RunSpec``) of one phase (teachers, then
students); ``base.execute`` plans a study once and drives an executor through its phases.

The run store is the truth: jobs write finished runs into the results directory exactly as a
local run does, so what is done, missing or failed is read from there, and running the same
command again submits only what is missing.

SLURM files live in ``<results>/slurm/``: ``jobs.jsonl`` (one line per job array: its phase,
job ids, runs and log paths) and one folder per job with submitit's pickles and logs.

The modules:

- ``base``: the ``Executor`` protocol and ``execute``;
- ``local``: the local executors (``local_executor``, ``LocalExecutor``, ``LocalPoolExecutor``);
- ``split``: splitting a phase's bundles into jobs;
- ``slurm_config``: the experiment's ``slurm:`` section as ``SlurmConfig``;
- ``slurm_queue``: the cluster's commands, partitions and the state of submitted jobs;
- ``slurm_view``: progress while waiting for jobs;
- ``slurm``: the SLURM executor and the job each node runs (``BundleJob``).

Everything public is importable from ``kdfair.executors``. Executors sit above the runner and
below the API, which chooses and builds them (``api.make_executor``): they import ``runner``,
never the reverse; submitit and rich stay lazy.
"""

from __future__ import annotations

from kdfair.executors.base import Executor, execute
from kdfair.executors.local import LocalExecutor, LocalPoolExecutor, local_executor
from kdfair.executors.slurm import BundleJob, SlurmExecutor
from kdfair.executors.slurm_config import slurm_config
from kdfair.executors.slurm_queue import (
    JobState,
    Partition,
    SlurmError,
    counts,
    job_states,
    partitions,
    poll,
    slurm_available,
    submitted_jobs,
)
from kdfair.executors.slurm_view import RichSlurmView, SlurmView
from kdfair.executors.split import split_bundles, split_evenly

EXECUTORS = ("local", "slurm")

__all__ = [
    "EXECUTORS",
    "BundleJob",
    "Executor",
    "JobState",
    "LocalExecutor",
    "LocalPoolExecutor",
    "Partition",
    "RichSlurmView",
    "SlurmError",
    "SlurmExecutor",
    "SlurmView",
    "counts",
    "execute",
    "job_states",
    "local_executor",
    "partitions",
    "poll",
    "slurm_available",
    "slurm_config",
    "split_bundles",
    "split_evenly",
    "submitted_jobs",
]
