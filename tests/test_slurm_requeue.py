"""The preemption/time-out decision of a signalled SLURM job, without a cluster (the end-to-end
preemption test is in test_slurm.py and needs one)."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest

from kdfair.executors import slurm_requeue as rq


@pytest.mark.parametrize("elapsed,limit,kind", [
    (5, 600, "preempted"),  # submitit calls any signal "timed out" under a 10-minute limit
    (449, 600, "preempted"),
    (450, 600, "timeout"),  # 600 - 90 s lead - 60 s margin
    (510, 600, "timeout"),
    (3 * 3600, 4 * 3600, "preempted"),  # submitit: past 0.8 × limit counts as a time-out
    (10, None, "preempted"),
])
def test_signal_is_a_time_out_only_near_the_limit(elapsed, limit, kind):
    assert rq.classify(elapsed, limit) == kind


def test_decision():
    assert rq.decide("preempted", 3, 0).requeue
    assert rq.decide("timeout", 3, 1).requeue  # a time-out with progress: requeued too
    stuck = rq.decide("timeout", 3, 0)
    assert not stuck.requeue and "raise `slurm.time`" in stuck.reason
    assert not rq.decide("preempted", 0, 5).requeue


def test_limit_from_slurm_times_else_submitit(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_START_TIME", "1000")
    monkeypatch.setenv("SLURM_JOB_END_TIME", "1600")
    assert rq.job_limit_s(2) == 600
    monkeypatch.delenv("SLURM_JOB_END_TIME")
    assert rq.job_limit_s(2) == 120 and rq.job_limit_s(None) is None


class FakeSubmititHandler:
    """What submitit's SignalHandler exposes to us: has_timed_out and the delayed submission."""

    def __init__(self, timeout_min: int, countdown: int):
        self._delayed = SimpleNamespace(_timeout_min=timeout_min, _timeout_countdown=countdown)
        self.calls = []

    def has_timed_out(self) -> bool:  # submitit's rule under a 10-minute limit
        return True

    def checkpoint_and_try_requeue(self, signum, frame):
        self.calls.append((self.has_timed_out(), self._delayed._timeout_countdown))


@pytest.fixture
def usr2():
    before = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, before)


def test_installed_handler_overrides_submitits_time_out_rule(usr2, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_START_TIME", raising=False)
    fake = FakeSubmititHandler(timeout_min=10, countdown=0)
    signal.signal(signal.SIGUSR2, fake.checkpoint_and_try_requeue)
    said = []
    assert rq.install(lambda: 2, lambda: 0, said.append)
    os.kill(os.getpid(), signal.SIGUSR2)
    assert fake.calls == [(False, 0)]  # a preemption: submitit requeues without a countdown
    assert "preempted with 2 run(s) left: requeued" in said[0]


def test_time_out_with_progress_is_requeued_and_without_is_not(usr2, monkeypatch):
    monkeypatch.setattr(rq, "classify", lambda *a, **k: "timeout")
    for finished, countdown in ((1, 1), (0, 0)):
        fake = FakeSubmititHandler(timeout_min=10, countdown=0)
        signal.signal(signal.SIGUSR2, fake.checkpoint_and_try_requeue)
        assert rq.install(lambda: 2, lambda f=finished: f, lambda m: None)
        os.kill(os.getpid(), signal.SIGUSR2)
        # submitit requeues a time-out while countdown - 1 >= 0
        assert fake.calls == [(True, countdown)]


def test_install_outside_submitit_does_nothing(usr2):
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    assert not rq.install(lambda: 1, lambda: 0)


class Job:
    """A checkpointable job, as BundleJob is."""

    def __call__(self):
        return None

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def test_with_submitits_own_signal_handler_a_short_job_is_requeued(usr2, tmp_path, monkeypatch):
    """A 10-minute job preempted after a second, on its last allowed time-out: submitit alone
    would call it timed out and give up; with the decision in front it is requeued."""
    pytest.importorskip("submitit")
    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission, JobPaths

    monkeypatch.delenv("SLURM_JOB_START_TIME", raising=False)
    env = SimpleNamespace(global_rank=0, requeued=[])
    env._requeue = env.requeued.append
    delayed = DelayedSubmission(Job())
    delayed.set_timeout(10, 0)
    paths = JobPaths(tmp_path, job_id="7")
    paths.submitted_pickle.parent.mkdir(parents=True, exist_ok=True)
    handler = SignalHandler(env, paths, delayed)
    monkeypatch.setattr(handler, "_exit", lambda: None)
    assert handler.has_timed_out()  # submitit's own rule: timed out from the first second
    signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
    assert rq.install(lambda: 2, lambda: 0, lambda m: None)
    os.kill(os.getpid(), signal.SIGUSR2)
    assert env.requeued == [0]  # requeued (countdown unchanged: a preemption)


def test_a_job_leaving_the_queue_for_a_requeue_is_not_ended(tmp_path, monkeypatch):
    """A preempted job is out of squeue for a moment with a FAILED attempt in sacct (seen in
    CI under load): poll waits, and ends it only when it stays out with no requeue under way."""
    from kdfair.executors import slurm_queue as q

    log = tmp_path / "1_0_log.err"
    log.write_text("training…\nslurmstepd: error: *** JOB 1 ON vm CANCELLED AT 2026-12-01T10:30:07 "
                   "DUE TO JOB REQUEUE ***\n")
    queue: dict = {}
    monkeypatch.setattr(q, "_squeue", lambda ids, prefix="": dict(queue))
    monkeypatch.setattr(q, "_sacct", lambda ids: {"1": "FAILED"})
    clock = [0.0]
    monkeypatch.setattr(q.time, "monotonic", lambda: clock[0])
    job = q.JobState("1", ["r"], str(log))
    q.poll([job])
    clock[0] = 30.0
    q.poll([job])
    assert not job.ended  # its log says a requeue is under way
    queue["1"] = ("PENDING", "BeginTime")  # back in the queue
    q.poll([job])
    assert not job.ended and job.state == "PENDING"
    other = q.JobState("1", ["r"], str(tmp_path / "missing.err"))  # a real failure
    queue.clear()
    q.poll([other])
    assert not other.ended  # not before it has stayed out for settle_s
    clock[0] = 45.0
    q.poll([other])
    assert other.ended and other.category == "failed"
    # a job whose log still says 'requeue' but that stays out past grace_s has ended after
    # all (CI: SLURM killed the restart, "Job credential revoked"); it must not be waited on
    stuck = q.JobState("1", ["r"], str(log))
    clock[0] = 100.0
    q.poll([stuck])
    clock[0] = 130.0
    q.poll([stuck])
    assert not stuck.ended  # 30 s out: a requeue may still be coming
    clock[0] = 161.0
    q.poll([stuck])
    assert stuck.ended and stuck.category == "failed"  # 61 s out: it has ended


def test_a_requeue_message_followed_by_srun_lines_is_still_a_requeue(tmp_path, monkeypatch):
    """CI's log of a preempted job: SLURM's requeue line, then srun's and submitit's."""
    from kdfair.executors import slurm_queue as q

    log = tmp_path / "60_0_log.err"
    log.write_text(
        "submitit WARNING (2026-12-04 23:35:33,119) - Caught signal SIGUSR2 on vm: this job is "
        "preempted.\n"
        "slurmstepd-vm: error: *** STEP 60.0 ON vm CANCELLED AT 2026-12-04T23:35:33 DUE TO JOB "
        "REQUEUE ***\n"
        "srun: Job step aborted: Waiting up to 7 seconds for job step to finish.\n"
        "slurmstepd-vm: error: *** JOB 60 ON vm CANCELLED AT 2026-12-04T23:35:33 DUE TO JOB "
        "REQUEUE ***\n"
        "submitit WARNING (2026-12-04 23:35:33,129) - Bypassing signal SIGCONT\n"
        "srun: got SIGCONT\nsrun: forcing job termination\n"
        "srun: error: vm: task 0: Terminated\n")
    assert q._requeue_in_progress(q.JobState("60", ["r"], str(log)))
    failed = tmp_path / "61_0_log.err"  # a requeue long ago, then a real failure
    failed.write_text("x DUE TO JOB REQUEUE ***\n" + "".join(f"Traceback line {i}\n"
                                                           for i in range(10)))
    assert not q._requeue_in_progress(q.JobState("61", ["r"], str(failed)))
