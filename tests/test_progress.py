"""Progress and logging: the run counter and ETA, time-stamped lines at most every 30 s outside a
terminal, the live view, the same from the API as from the CLI; -v/-q/--version; the check that
says when PyTorch's threads make training much slower than one thread."""

import io
import logging
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from kdfair.cli import app
from kdfair.progress import (
    LineReporter,
    RichReporter,
    StudyClock,
    check_threads,
    fmt_duration,
    matmul_rate,
    members,
    slow_threads_message,
    study_reporter,
)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_eta_from_finished_runs_and_the_running_epoch():
    clock = FakeClock()
    c = StudyClock(total=10, done=2, now=clock)
    assert c.eta() is None and c.counter() == "2/10 runs"
    clock.t = 10.0
    c.epoch("nds-s0-x", 5, 10)  # half a run in 10 s: 7.5 runs left at 20 s each
    assert c.eta() == pytest.approx(150.0)
    clock.t = 20.0
    c.finish()
    assert c.counter() == "3/10 runs" and c.eta() == pytest.approx(20.0 * 7)
    c.epoch("4 runs (lenet5)", 1, 2)  # the grouped engine: one label for four runs
    assert c.partial == 2.0 and members("4 runs (lenet5)") == 4 and members("ds-T4-s1") == 1


def test_lines_are_time_stamped_with_counter_and_eta_at_most_every_30_s():
    clock, out = FakeClock(), io.StringIO()
    rep = LineReporter(total=4, done=1, stream=out, now=clock)
    with rep:
        rep.start("nds-s0-abc", 3)
        for epoch in (1, 2, 3):
            clock.t += 12.0
            rep.epoch("nds-s0-abc", epoch, 0.5, 1000.0, val_acc=0.9)
        rep.finish("nds-s0-abc", "done")
        rep.start("ds-T2-s0-def", 3)
        clock.t += 40.0
        rep.epoch("ds-T2-s0-def", 1, 0.4, 900.0)
        rep.finish("ds-T2-s0-def", "failed")  # always shown
    lines = out.getvalue().splitlines()
    assert all(re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ", line) for line in lines)
    body = [line.split("] ", 1)[1] for line in lines]
    assert body[0] == "study: 1/4 runs done at start"
    # epochs at 12 s and 24 s fall within 30 s of the first line; 36 s is shown
    assert body[1] == ("1/4 runs, ETA 1m12s | nds-s0-abc epoch 3/3: loss 0.500  val 90.0%  "
                       "1,000 img/s")
    assert "ds-T2-s0-def epoch 1/3" in body[2] and body[2].startswith("2/4 runs, ETA ")
    assert body[3].endswith("ds-T2-s0-def: failed") and body[3].startswith("3/4 runs")
    assert body[4].startswith("study: 3/4 runs, 1m16s in this session")
    assert len(lines) == 5


def test_live_view_shows_the_study_and_the_run():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with RichReporter(total=3, done=0, console=console) as rep:
        rep.start("teacher-s0-aaa", 2)
        rep.epoch("teacher-s0-aaa", 1, 0.7, 500.0)
        rep.finish("teacher-s0-aaa", "done")
        rep.warn("a warning")
    text = buf.getvalue()
    assert "study" in text and "1/3" in text and "ETA" in text
    assert "teacher-s0-aaa: done" in text and "a warning" in text


def test_reporter_choice(monkeypatch):
    assert study_reporter(progress=False, total=3) is None
    assert isinstance(study_reporter(stream=io.StringIO(), total=3), LineReporter)
    monkeypatch.setattr("sys.modules", {**__import__("sys").modules, "ipykernel": object()})
    assert isinstance(study_reporter(stream=io.StringIO(), total=3), RichReporter)


def test_durations_read_well():
    assert [fmt_duration(s) for s in (None, 5.4, 250, 3725)] == ["?", "5s", "4m10s", "1h02m"]


def test_slow_threads_message_points_at_the_threads_setting():
    assert slow_threads_message(single=10.0, current=9.0, threads=2) is None
    assert slow_threads_message(single=10.0, current=1.0, threads=1) is None
    msg = slow_threads_message(single=10.0, current=2.0, threads=8)
    assert "8 threads runs 5.0× slower than with one thread" in msg
    assert "engine.threads" in msg and "OMP_NUM_THREADS=1" in msg


def test_the_reference_measurement_is_quick_and_restores_threads():
    import time

    import torch

    n = torch.get_num_threads()
    t0 = time.perf_counter()
    assert matmul_rate(1, seconds=0.02) > 0
    assert time.perf_counter() - t0 < 1.0 and torch.get_num_threads() == n
    torch.set_num_threads(1)
    try:
        assert check_threads() is None  # one thread: nothing to compare
    finally:
        torch.set_num_threads(n)
    torch.set_num_threads(2)
    try:
        check = check_threads(seconds=0.01)
        assert check.threads == 2 and check.single > 0 and check.current > 0
        assert check.slowdown == pytest.approx(check.single / check.current)
    finally:
        torch.set_num_threads(n)


def test_the_first_epoch_says_what_the_slowdown_costs_in_images_per_s():
    out = io.StringIO()
    rep = LineReporter(total=2, done=0, stream=out)
    rep.slowdown = 4.0
    rep.start("nds-s0-abc", 2)
    rep.epoch("nds-s0-abc", 1, 0.5, 250.0)
    rep.epoch("nds-s0-abc", 2, 0.4, 260.0)
    notes = [line for line in out.getvalue().splitlines() if "warning:" in line]
    assert len(notes) == 1
    assert notes[0].endswith("warning: nds-s0-abc trains at 250 img/s; at this machine's "
                             "single-thread speed it would reach about 1,000 img/s "
                             "(engine.threads: 1)")


def test_verbose_quiet_and_version():
    runner = CliRunner()
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and re.fullmatch(r"kdfair \d+\.\d+\.\d+\S*\n", res.output)
    assert runner.invoke(app, ["-v", "presets"]).exit_code == 0
    assert logging.getLogger().level == logging.INFO
    assert runner.invoke(app, ["-vv", "presets"]).exit_code == 0
    assert logging.getLogger().level == logging.DEBUG
    assert runner.invoke(app, ["-q", "presets"]).exit_code == 0
    assert logging.getLogger().level == logging.ERROR
    assert runner.invoke(app, ["presets"]).exit_code == 0
    assert logging.getLogger().level == logging.WARNING


def test_the_console_script_enters_the_app_with_its_callback():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^kdfair = "kdfair.cli:app"$', text, re.M)
    from kdfair import cli

    assert cli.app.registered_callback.callback is cli._main  # where logging is configured


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_python_api_reports_progress_outside_a_terminal(tmp_path, capsys):
    import numpy as np

    from kdfair import api

    rng = np.random.default_rng(0)

    def split(n):
        return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n)

    def mlp(k, shape):
        import torch.nn as nn

        return nn.Sequential(nn.Linear(shape[0], 8), nn.ReLU(), nn.Linear(8, k))

    parts = split(64), split(16), split(32)
    kw = dict(temperatures=[2], seeds=[0, 1], teacher_train={"epochs": 2},
              student_train={"epochs": 2}, device="cpu", out=tmp_path, write_report=False)
    api.study("progress", *parts, mlp, mlp, **kw)
    err = capsys.readouterr().err
    assert re.search(r"\] study: 0/6 runs done at start", err)
    assert re.search(r"\] study: 6/6 runs, \S+ in this session", err)
    api.study("progress", *parts, mlp, mlp, progress=False, **kw)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_slurm_job_logs_time_stamped_progress(tmp_path, capsys):
    import yaml

    from kdfair.config import experiment_from_dict
    from kdfair.executors import BundleJob
    from kdfair.runner import load_data, plan
    from tests.test_overrides import EXPERIMENT

    exp = experiment_from_dict(yaml.safe_load(EXPERIMENT))
    teachers = [s for s in plan(exp, load_data(exp).fingerprint) if s.role == "teacher"]
    result = BundleJob(exp.model_dump(mode="json"), str(tmp_path),
                       [s.to_json() for s in teachers])()
    assert result["done"] == [s.run_id for s in teachers]
    out = capsys.readouterr().out
    assert re.search(r"\] study: 0/2 runs done at start", out)
    assert re.search(r"\] study: 2/2 runs, \S+ in this session", out)


def _run_on_a_slow_machine(tmp_path, capsys, monkeypatch, **extra) -> str:
    """A one-teacher, one-student study while the thread check reports 4 threads at a fifth of
    one thread's speed; what it wrote to stderr."""
    import yaml

    from kdfair import api, progress
    from kdfair.config import experiment_from_dict
    from tests.test_overrides import EXPERIMENT

    monkeypatch.setattr(progress, "check_threads",
                        lambda seconds=0.05: progress.ThreadCheck(4, 10.0, 2.0))
    exp = experiment_from_dict({**yaml.safe_load(EXPERIMENT), "seeds": [0],
                                "distill": {"temperatures": [2]}, **extra})
    api.run(exp, out=tmp_path, write_report=False)
    return capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_slow_machine_is_reported_before_and_during_training(tmp_path, capsys, monkeypatch):
    # one training process with the process' threads (the default is one thread per run)
    err = _run_on_a_slow_machine(tmp_path, capsys, monkeypatch, engine={"workers": 1})
    assert "warning: PyTorch with 4 threads runs 5.0× slower than with one thread" in err
    assert re.search(r"warning: teacher-s0-\w+ trains at [\d,]+ img/s; at this machine's "
                     r"single-thread speed it would reach about [\d,]+ img/s", err)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_no_thread_warning_when_the_experiment_fixes_one_thread(tmp_path, capsys, monkeypatch):
    err = _run_on_a_slow_machine(tmp_path, capsys, monkeypatch, engine={"threads": 1})
    assert "slower than with one thread" not in err


# --- the ETA from a plan's estimate (issue 24): per role, per chunk, the report included --------


def _demo_schedule(cost: dict[str, float], report_s: float):
    """The demo's plan (3 teachers, 3 NDS, 15 DS) as the local executor splits it over 2
    workers, each run costing ``cost[role]`` estimated seconds."""
    from kdfair.config import load_experiment
    from kdfair.planning import chunked
    from kdfair.progress import Schedule
    from kdfair.runner import plan

    specs = plan(load_experiment("demo"), "fingerprint")
    chunks = chunked(specs, set(), workers=2)
    return Schedule(cost={s.run_id: cost[s.role] for s in specs},
                    role={s.run_id: s.role for s in specs}, phases=chunks, workers=2,
                    report_s=report_s), specs


def _simulate(schedule, seconds: dict[str, float], epochs: int = 15):
    """The events two workers send while training the schedule's chunks, each run of role r
    taking ``seconds[r]``: (time, kind, run id, epoch), in time order; and when training ends."""
    events, t_phase = [], 0.0
    for phase in schedule.phases:
        ends = []
        for chunk in phase:  # two chunks at most per phase here: one per worker
            t = t_phase
            for rid in chunk:
                run = seconds[schedule.role[rid]]
                events.append((t, "start", rid, 0))
                events += [(t + run * e / epochs, "epoch", rid, e) for e in range(1, epochs + 1)]
                t += run
                events.append((t, "finish", rid, 0))
            ends.append(t)
        t_phase = max(ends)
    order = {"start": 0, "epoch": 1, "finish": 2}
    return sorted(events, key=lambda e: (e[0], order[e[1]])), t_phase


def test_the_first_estimate_is_the_schedule_on_its_workers_plus_the_report():
    schedule, specs = _demo_schedule({"teacher": 30.0, "nds": 1.0, "ds": 1.0}, report_s=10.0)
    assert [len(c) for c in schedule.phases[0]] == [2, 1]  # teachers s0, s1 | s2
    assert [len(c) for c in schedule.phases[1]] == [9, 9]
    clock = StudyClock(total=len(specs), done=0, now=FakeClock(), schedule=schedule)
    # teachers: 2 × 30 s on the first worker; students: 9 × 1 s on each; then the report
    assert clock.eta() == pytest.approx(60 + 9 + 10)


@pytest.mark.parametrize("slower", [0.5, 1.0, 2.5])
def test_the_eta_is_within_30_percent_after_the_first_finished_run(slower):
    """The demo's shape — teachers 30× the students' cost, two workers, the report after —
    on a machine ``slower`` times the estimate for teachers and 1.3 × that for students: from
    the first finished run on, the ETA is within ±30 % of the time really left."""
    cost = {"teacher": 30.0, "nds": 1.0, "ds": 1.1}
    schedule, specs = _demo_schedule(cost, report_s=20.0)
    real = {"teacher": 30.0 * slower, "nds": 1.3 * slower, "ds": 1.43 * slower}
    events, trained = _simulate(schedule, real)
    end = trained + 20.0
    clock = FakeClock()
    study = StudyClock(total=len(specs), done=0, now=clock, schedule=schedule)
    checked = 0
    for t, kind, rid, epoch in events:
        clock.t = t
        if kind == "start":
            study.start(rid)
        elif kind == "epoch":
            study.epoch(rid, epoch, 15)
        else:
            study.finish(rid)
            left = end - t
            assert study.eta() == pytest.approx(left, rel=0.30), (rid, t)
            checked += 1
    assert checked == 21 and study.counter() == "21/21 runs"
    assert study.eta() == pytest.approx(20.0)  # what is left at the end: the report


def test_the_old_eta_without_a_schedule_still_counts_runs():
    clock = FakeClock()
    c = StudyClock(total=4, done=0, now=clock)
    c.start("nds-s0-x")
    clock.t = 10.0
    c.epoch("nds-s0-x", 1, 1)
    c.finish("nds-s0-x")
    assert c.eta() == pytest.approx(30.0)


def test_phase_seconds_give_chunks_to_the_first_worker_free():
    from kdfair.progress import phase_seconds

    assert phase_seconds([3.0, 1.0, 2.0], workers=2) == 3.0  # 3 | 1 then 2
    assert phase_seconds([3.0, 1.0, 2.0], workers=1) == 6.0
    assert phase_seconds([1.0, 1.0, 4.0], workers=2) == 5.0  # 1 then 4 | 1
    assert phase_seconds([], workers=2) == 0.0


def test_the_estimate_opens_the_log_and_the_header_stands_on_its_own_line():
    schedule, specs = _demo_schedule({"teacher": 30.0, "nds": 1.0, "ds": 1.0}, report_s=10.0)
    out = io.StringIO()
    with LineReporter(stream=out, now=FakeClock()) as rep:
        rep.step("loading data set trifeature")
        rep.plan(len(specs), 0, schedule)
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["loading data set trifeature…",
                     "study: 0/21 runs done at start, estimate 1m19s",
                     "study: 0/21 runs, 0s in this session"]

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with RichReporter(console=console) as rep:
        rep.step("loading data set trifeature")
        rep.hold()
        console.print("demo: 21 runs (0 already done)")  # what the CLI prints, between the two
        rep.plan(len(specs), 0, schedule)
        rep.start("teacher-s0-aaa", 15)
        rep.epoch("teacher-s0-aaa", 1, 0.7, 500.0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    heading = [line for line in text.replace("\r", "\n").split("\n") if "demo: 21 runs" in line]
    assert heading and all(line.strip() == "demo: 21 runs (0 already done)" for line in heading)
    assert "ETA" in text and "study" in text


def test_the_report_phase_says_what_it_does(tmp_path):
    from kdfair.progress import phase_view, step

    out = io.StringIO()
    with phase_view(stream=out):
        step("report: class-wise tests")
        step("report: trends over T")
    step("nobody listens")  # outside the view: nothing
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["report: class-wise tests…", "report: trends over T…"]
    quiet = io.StringIO()
    with phase_view(progress=False, stream=quiet):
        step("report: class-wise tests")
    assert quiet.getvalue() == ""


def test_the_live_view_keeps_a_bar_per_running_run_and_per_group():
    """Two workers train at once: each run has its bar until it ends; a group's bar (one label
    for several runs) goes when its last member is saved."""
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with RichReporter(total=5, console=console) as rep:
        rep.plan(5, 0)
        rep.start("nds-s0-a", 2)
        rep.start("nds-s1-b", 2)
        rep.epoch("nds-s0-a", 1, 0.5, 10.0)
        rep.finish("nds-s0-a", "done")
        assert sorted(rep.tasks) == ["nds-s1-b"]
        rep.start("3 runs (lenet5)", 2)
        rep.finish("ds-T2-s0-x", "done")
        rep.finish("ds-T2-s1-y", "done")
        assert rep.tasks["3 runs (lenet5)"][2] == 1
        rep.finish("ds-T2-s2-z", "done")
        rep.finish("nds-s1-b", "done")
        assert rep.tasks == {} and len(rep.progress.tasks) == 1  # the study's bar alone


def test_a_spinner_shows_bracketed_names_verbatim():
    """In a terminal, a step naming a data set, a model or a path that holds brackets is shown
    as it is: never parsed as console markup ('[/]' crashed, '[old]' vanished)."""
    from kdfair import progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    rep = RichReporter(console=console)
    rep.step("loading data set my[/]set")
    rep.step("timing a few training steps of NDS ([old]net)")
    rep.hold()
    terminal = type("Terminal", (io.StringIO,), {"isatty": lambda self: True})()
    with progress.phase_view(stream=terminal, console=console) as say:
        say("report: opening results/[/]x")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "timing a few training steps of NDS ([old]net)…" in text
    assert "report: opening results/[/]x…" in text
