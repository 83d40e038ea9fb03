"""Progress of a study, the same from the command line and the Python API.

In a terminal or a notebook: a live view (rich) with the study's runs n/N, its ETA and the
running run's epoch. Elsewhere (SLURM logs, nohup, CI): time-stamped lines with the run counter
and ETA, at most one every 30 s (a failed run and the end are always written). Before training on
a CPU, a tiny single-thread reference (a fraction of a second) tells whether PyTorch's threads
are making training much slower than one thread would; if so, the reporter says so.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger("kdfair")

LINE_INTERVAL_S = 30.0


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """kdfair's log lines on stderr: warnings by default, INFO with -v, DEBUG with -vv, errors
    only with -q."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbose, 1)]
    if verbose >= 2:
        level = logging.DEBUG
    logging.basicConfig(level=level, force=True, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")


def interactive(stream: IO[str] | None = None) -> bool:
    """Whether progress should be live: ``stream`` (stderr) is a terminal, or we run in a
    Jupyter kernel."""
    stream = stream or sys.stderr
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def fmt_duration(seconds: float | None) -> str:
    """``"1h02m"``, ``"4m10s"``, ``"12s"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def members(label: str) -> int:
    """How many runs a reporter label stands for: the grouped engine reports ``"5 runs (…)"``."""
    head = label.split(" ", 1)[0]
    return int(head) if head.isdigit() and " runs" in label else 1


@dataclass(frozen=True)
class Schedule:
    """A plan's time estimate as the progress view starts from it (``kdfair.planning``): each run
    left's seconds alone on one worker (``cost``) and role, each phase's chunks (run ids one
    worker trains one after another), the workers, and the report's seconds."""

    cost: dict[str, float]
    role: dict[str, str]
    phases: list[list[list[str]]]
    workers: int = 1
    report_s: float = 0.0


def phase_seconds(chunks: list[float], workers: int) -> float:
    """Wall seconds of a phase whose chunks (each its runs' seconds, one after another) go to
    ``workers`` processes in order, each to the first one free."""
    free = [0.0] * max(1, min(workers, len(chunks)))
    for seconds in chunks:
        free[free.index(min(free))] += seconds
    return max(free, default=0.0)


class StudyClock:
    """Runs n/N and the ETA.

    With a ``Schedule`` (a plan's estimate) the ETA is the schedule's time left — every chunk of
    runs still to train on the workers, then the report — with each role's run seconds corrected
    by the ratio of its measured epochs to the estimate (teachers and students differ by 30× in
    cost, and a busy machine slows both). Without one: the session's time per finished run.
    """

    def __init__(self, total: int = 0, done: int = 0,
                 now: Callable[[], float] = time.monotonic, schedule: Schedule | None = None):
        self.total, self.done, self.now = total, done, now
        self.t0 = now()
        self.finished = 0  # in this session
        self.partial = 0.0  # runs' worth of the current task's epochs
        self.schedule = schedule
        self.ended: set[str] = set()
        self.running: dict[str, list[float]] = {}  # label -> [started at, members, fraction]
        self.ratio: dict[str, float] = {}  # role -> measured seconds / estimated seconds

    def start(self, label: str) -> None:
        self.running[label] = [self.now(), float(members(label)), 0.0]

    def epoch(self, label: str, epoch: int, epochs: int) -> None:
        self.partial = members(label) * epoch / max(1, epochs)
        if label in self.ended:  # (a late event of a run already saved)
            return
        run = self.running.setdefault(label, [self.t0, float(members(label)), 0.0])
        run[2] = epoch / max(1, epochs)
        if self.schedule is not None:
            role, cost = self._label_cost(label)
            if cost > 0:
                self.ratio[role] = (self.now() - run[0]) / (run[2] * cost)

    def finish(self, run_id: str = "") -> None:
        self.finished += 1
        self.done += 1
        self.partial = max(0.0, self.partial - 1)
        self.ended.add(run_id)
        if self.running.pop(run_id, None) is None:  # a member of a group ended
            for label, run in self.running.items():
                if label not in self._cost():
                    run[1] -= 1
                    if run[1] <= 0:
                        del self.running[label]
                    break

    def _cost(self) -> dict[str, float]:
        return self.schedule.cost if self.schedule is not None else {}

    def _label_cost(self, label: str) -> tuple[str, float]:
        """A label's role and estimated seconds: a run's, or a group's (its members × the mean
        of the runs left of the role now training)."""
        sched = self.schedule
        assert sched is not None
        if label in sched.cost:
            return sched.role.get(label, "?"), sched.cost[label]
        left = [r for phase in sched.phases for chunk in phase for r in chunk
                if r not in self.ended and r not in self.running]
        if not left:
            return "?", 0.0
        role = sched.role.get(left[0], "?")
        costs = [sched.cost[r] for r in left if sched.role.get(r) == role]
        return role, members(label) * sum(costs) / len(costs)

    def _ratio(self, role: str) -> float:
        if role in self.ratio:
            return self.ratio[role]
        return sum(self.ratio.values()) / len(self.ratio) if self.ratio else 1.0

    def eta(self) -> float | None:
        if self.schedule is not None:
            return self._scheduled_eta()
        progress = self.finished + self.partial
        if progress <= 0:
            return None
        left = max(0.0, self.total - self.done - self.partial)
        return (self.now() - self.t0) / progress * left

    def _scheduled_eta(self) -> float:
        sched, now = self.schedule, self.now()
        assert sched is not None
        wall, current = 0.0, True
        for phase in sched.phases:
            chunks = []
            for chunk in phase:
                left = 0.0
                for r in chunk:
                    if r in self.ended:
                        continue
                    expected = sched.cost.get(r, 0.0) * self._ratio(sched.role.get(r, "?"))
                    if r in self.running:  # counts down from its start
                        expected = max(0.0, expected - (now - self.running[r][0]))
                    left += expected
                chunks.append(left)
            if current and any(chunks):  # the phase training now: its groups' progress
                current = False
                for label, (started, _, frac) in self.running.items():
                    if label not in sched.cost and frac:
                        role, cost = self._label_cost(label)
                        i = max(range(len(chunks)), key=chunks.__getitem__)
                        chunks[i] = max(0.0, chunks[i] - min(cost * self._ratio(role),
                                                             now - started))
            wall += phase_seconds(chunks, sched.workers)
        return wall + sched.report_s

    def counter(self) -> str:
        return f"{self.done}/{self.total} runs"


def _epoch_info(loss: float, images_per_s: float, extra: dict[str, Any]) -> str:
    info = f"loss {loss:.3f}"
    if extra.get("val_acc") is not None:
        info += f"  val {100 * extra['val_acc']:.1f}%"
    return info + f"  {images_per_s:,.0f} img/s"


class _SpeedNote:
    """Once the thread check found PyTorch's threads ``slowdown`` times slower than one thread,
    the first epoch reported says what that means in images/s."""

    slowdown: float | None = None
    _noted = False

    def warn(self, text: str) -> None:  # pragma: no cover - both reporters define it
        raise NotImplementedError

    def _note_speed(self, run_id: str, images_per_s: float) -> None:
        if self.slowdown and not self._noted:
            self._noted = True
            self.warn(f"{run_id} trains at {images_per_s:,.0f} img/s; at this machine's "
                      f"single-thread speed it would reach about "
                      f"{images_per_s * self.slowdown:,.0f} img/s (engine.threads: 1)")


class LineReporter(_SpeedNote):
    """Time-stamped progress lines for logs: at most one per ``interval`` seconds."""

    def __init__(self, total: int = 0, done: int = 0, stream: IO[str] | None = None,
                 interval: float = LINE_INTERVAL_S, now: Callable[[], float] = time.monotonic):
        self.clock = StudyClock(total, done, now)
        self.stream, self.interval, self.now = stream, interval, now
        self._last = -math.inf
        self._epochs: dict[str, int] = {}
        self._planned = total > 0

    def __enter__(self) -> LineReporter:
        if self._planned:
            self._write(f"study: {self.clock.counter()} done at start")
        return self

    def plan(self, total: int, done: int, schedule: Schedule | None = None) -> None:
        """The study's size, once planned, and its time estimate (if one was made)."""
        self.clock.total, self.clock.done = total, done
        self.clock.schedule = schedule
        eta = f", estimate {fmt_duration(self.clock.eta())}" if schedule is not None else ""
        self._write(f"study: {self.clock.counter()} done at start{eta}", force=True)

    def step(self, text: str) -> None:
        """What a phase without runs does now (loading data, timing the models)."""
        self._write(f"{text}…", force=True)

    def hold(self) -> None:
        """(What the caller prints next stands on its own line: nothing to stop here.)"""

    def __exit__(self, *exc: Any) -> None:
        if self.clock.total:  # (an error before the plan, e.g. no data: its message alone)
            self._write(f"study: {self.clock.counter()}, "
                        f"{fmt_duration(self.now() - self.clock.t0)} in this session", force=True)

    def _write(self, text: str, force: bool = False) -> None:
        t = self.now()
        if not force and t - self._last < self.interval:
            return
        self._last = t
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"[{stamp}] {text}", file=self.stream or sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}", force=True)

    def _head(self) -> str:
        return f"{self.clock.counter()}, ETA {fmt_duration(self.clock.eta())}"

    def start(self, run_id: str, epochs: int) -> None:
        self._epochs[run_id] = epochs
        self.clock.start(run_id)

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float,
              **extra: Any) -> None:
        epochs = self._epochs.get(run_id, epoch)
        self.clock.epoch(run_id, epoch, epochs)
        self._note_speed(run_id, images_per_s)
        self._write(f"{self._head()} | {run_id} epoch {epoch}/{epochs}: "
                    f"{_epoch_info(loss, images_per_s, extra)}")

    def finish(self, run_id: str, status: str) -> None:
        self.clock.finish(run_id)
        self._write(f"{self._head()} | {run_id}: {status}", force=status == "failed")


class RichReporter(_SpeedNote):
    """A live view: the study (runs n/N, ETA) and the running run (epoch, loss, images/s)."""

    def __init__(self, total: int = 0, done: int = 0, console: Any = None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.clock = StudyClock(total, done)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console)
        self.study = self.progress.add_task("study", total=total, completed=done, info="")
        self.tasks: dict[str, list[Any]] = {}  # label -> [task, epochs, members left]
        self._status: Any = None
        self._live = False

    def __enter__(self) -> RichReporter:
        return self  # the live view starts with the plan, below whatever was printed before it

    def __exit__(self, *exc: Any) -> None:
        self._end_status()
        if self._live:
            self.progress.__exit__(*exc)

    def _end_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _start_live(self) -> None:
        self._end_status()
        if not self._live:
            self._live = True
            self.progress.start()

    def hold(self) -> None:
        """Stop the spinner, so that what the caller prints next stands on its own line."""
        self._end_status()

    def step(self, text: str) -> None:
        """What a phase without runs does now (loading data, timing the models): a spinner."""
        from rich.text import Text  # names data sets and models: never parsed as markup

        if self._live:
            self.progress.console.print(f"{text}…", markup=False, highlight=False)
        elif self._status is None:
            self._status = self.console.status(Text(f"{text}…"))
            self._status.start()
        else:
            self._status.update(Text(f"{text}…"))

    def plan(self, total: int, done: int, schedule: Schedule | None = None) -> None:
        """The study's size, once planned, and its time estimate: the live view starts."""
        self.clock.total, self.clock.done = total, done
        self.clock.schedule = schedule
        self.progress.update(self.study, total=total, completed=done)
        if schedule is not None:
            self._eta()
        self._start_live()

    def warn(self, text: str) -> None:
        from rich.markup import escape  # messages hold brackets ('[all seeds equal]', '[0, 1]')

        self._end_status()
        self.progress.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)

    def _eta(self) -> None:
        self.progress.update(self.study, info=f"ETA {fmt_duration(self.clock.eta())}")

    def start(self, run_id: str, epochs: int) -> None:
        """A run (or a group, ``"5 runs (lenet5)"``) starts: a bar of its own; several workers'
        runs have one each."""
        self._start_live()
        self.clock.start(run_id)
        task = self.progress.add_task(f"  {run_id}", total=epochs, info="")
        self.tasks[run_id] = [task, epochs, members(run_id)]

    def epoch(self, run_id: str, epoch: int, loss: float, images_per_s: float,
              **extra: Any) -> None:
        task = self.tasks.get(run_id)
        self.clock.epoch(run_id, epoch, task[1] if task else epoch)
        self._note_speed(run_id, images_per_s)
        if task is not None:
            self.progress.update(task[0], completed=epoch,
                                 info=_epoch_info(loss, images_per_s, extra))
        self._eta()

    def finish(self, run_id: str, status: str) -> None:
        from rich.markup import escape

        label = run_id if run_id in self.tasks else next(  # else a member of a group
            (k for k in self.tasks if members(k) > 1), None)
        if label is not None:
            self.tasks[label][2] -= 1
            if self.tasks[label][2] <= 0:
                self.progress.remove_task(self.tasks.pop(label)[0])
        self.clock.finish(run_id)
        self.progress.advance(self.study)
        self._eta()
        self.progress.console.print(("[red]" if status == "failed" else "")
                                    + escape(f"{run_id}: {status}"), highlight=False)


def study_reporter(progress: bool | None = None, stream: IO[str] | None = None,
                   total: int = 0, done: int = 0) -> RichReporter | LineReporter | None:
    """The reporter for ``progress``: None decides (live in a terminal or notebook, lines
    elsewhere), True the same, False none. The study's size comes with ``plan``."""
    if progress is False:
        return None
    if interactive(stream):
        return RichReporter(total, done)
    return LineReporter(total, done, stream)


# --- phases without runs (the report's sections): what they do now ------------------------------

_LISTENER: ContextVar[Callable[[str], None] | None] = ContextVar("kdfair_step", default=None)


def step(text: str) -> None:
    """Say what a long phase does now (``"report: class-wise tests"``) to whoever listens
    (:func:`steps`); nothing when nobody does."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(text)


@contextmanager
def steps(listener: Callable[[str], None] | None) -> Iterator[None]:
    """``listener(text)`` hears every :func:`step` in the block."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


class _Elapsed:
    """A spinner's text: the step, and the time since the view opened, as of each refresh."""

    def __init__(self) -> None:
        self.text, self.t0 = "", time.monotonic()

    def show(self, text: str) -> None:
        self.text = text

    def __rich__(self) -> Any:
        from rich.text import Text  # the step names a path: never parsed as console markup

        return Text(f"{self.text}… ({fmt_duration(time.monotonic() - self.t0)})")


@contextmanager
def phase_view(progress: bool | None = None, stream: IO[str] | None = None,
               console: Any = None) -> Iterator[Callable[[str], None]]:
    """Progress of a phase without runs (the report), as a listener of :func:`step`: in a
    terminal a spinner naming the step and its time so far; elsewhere a time-stamped line per
    step; nothing with ``progress`` False."""
    if progress is False:
        with steps(None):
            yield lambda text: None
        return
    if interactive(stream):
        from rich.console import Console

        console = console or Console(stderr=True)
        clock = _Elapsed()
        with console.status(clock), steps(clock.show):
            yield clock.show
        return
    lines = LineReporter(stream=stream, interval=0.0)

    def write(text: str) -> None:
        lines._write(f"{text}…", force=True)

    with steps(write):
        yield write


def warn_if_threads_hurt(reporter: RichReporter | LineReporter) -> None:
    """Run the single-thread check; when PyTorch's threads are much slower, say so."""
    check = check_threads()
    if check is not None and check.message:
        log.info(check.message)
        reporter.warn(check.message)
        reporter.slowdown = check.slowdown


# --- is PyTorch's thread count hurting? ---------------------------------------------------------


def matmul_rate(threads: int, seconds: float = 0.05, size: int = 192) -> float:
    """Multiply-adds per second of repeated [size × size] float32 matmuls with ``threads``
    torch threads (the thread count is restored)."""
    import torch

    a = torch.randn(size, size)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a @ a  # warm up the thread pool
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            a @ a
            n += 1
        return n * size**3 / max(elapsed, 1e-9)
    finally:
        torch.set_num_threads(old)


def slow_threads_message(single: float, current: float, threads: int,
                         factor: float = 2.0) -> str | None:
    """A warning when ``threads`` torch threads run at less than 1/``factor`` of one thread's
    speed (the machine's cores are busy, or fewer than PyTorch assumes), else None."""
    if threads <= 1 or current * factor >= single:
        return None
    return (f"PyTorch with {threads} threads runs {single / current:.1f}× slower than with one "
            "thread on this machine right now (its cores are busy or fewer than PyTorch "
            "assumes), so training will be much slower than it could be: set the threads "
            "setting (engine.threads: 1 in the experiment, or OMP_NUM_THREADS=1) and run again")


@dataclass(frozen=True)
class ThreadCheck:
    """The single-thread reference against PyTorch's thread count, in multiply-adds per second."""

    threads: int
    single: float
    current: float

    @property
    def slowdown(self) -> float:
        return self.single / max(self.current, 1e-12)

    @property
    def message(self) -> str | None:
        return slow_threads_message(self.single, self.current, self.threads)


def check_threads(seconds: float = 0.05) -> ThreadCheck | None:
    """Measure the single-thread reference and the current thread count's speed (together about
    2 × ``seconds``); None with one thread (nothing to compare)."""
    import torch

    threads = torch.get_num_threads()
    if threads <= 1:
        return None
    return ThreadCheck(threads, matmul_rate(1, seconds), matmul_rate(threads, seconds))
