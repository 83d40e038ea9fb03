"""Executors: where a study's bundles train. Local (in this process, or one worker per GPU) and
SLURM (one job per bundle, a job array per phase, through submitit).

Every executor implements ``runner.Executor``: ``run_phase`` trains the bundles of one phase
(teachers, then students). The run store is the truth: jobs write finished runs into the results
directory exactly as a local run does, so what is done, missing or failed is read from there, and
running the same command again submits only what is missing.

SLURM files live in ``<results>/slurm/``: ``jobs.jsonl`` (one line per job array: its phase,
job ids, runs and log paths) and one folder per job with submitit's pickles and logs.

The modules:

- ``local``: the local executors (``local_executor``, ``LocalPoolExecutor``);
- ``split``: splitting a phase's bundles into jobs;
- ``slurm_config``: the SLURM settings (``SlurmConfig``) and their parsing;
- ``slurm_queue``: the cluster's commands, partitions and the state of submitted jobs;
- ``slurm_view``: progress while waiting for jobs;
- ``slurm``: the SLURM executor and the job each node runs (``BundleJob``).

Everything public is importable from ``kdfair.executors``. Nothing here imports
``kdfair.config`` at module level (it imports ``SlurmConfig``); submitit and rich stay lazy.
"""

from __future__ import annotations

from kdfair.executors.local import LocalPoolExecutor, local_executor
from kdfair.executors.slurm import BundleJob, SlurmExecutor
from kdfair.executors.slurm_config import (
    SlurmConfig,
    load_experiment_and_slurm,
    parse_minutes,
    parse_options,
    slurm_config,
)
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
    "JobState",
    "LocalPoolExecutor",
    "Partition",
    "RichSlurmView",
    "SlurmConfig",
    "SlurmError",
    "SlurmExecutor",
    "SlurmView",
    "counts",
    "job_states",
    "load_experiment_and_slurm",
    "local_executor",
    "parse_minutes",
    "parse_options",
    "partitions",
    "poll",
    "slurm_available",
    "slurm_config",
    "split_bundles",
    "split_evenly",
    "submitted_jobs",
]
