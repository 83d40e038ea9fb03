"""Progress while kdfair waits for a phase's SLURM jobs: a live table on a terminal, lines
otherwise (``RichSlurmView``), or nothing (``_QuietView``)."""

from __future__ import annotations

import time
from typing import Any, Protocol

from kdfair.executors.slurm_queue import JobState, counts


class SlurmView(Protocol):
    """Shows what the jobs of a phase are doing while kdfair waits for them."""

    def update(self, phase: str, jobs: list[JobState], note: str = "") -> None: ...


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
                                   + (f"  ({note})" if note else ""), markup=False,
                                   highlight=False)  # the note names a path: text, not markup
            return
        from rich.table import Table
        from rich.text import Text

        if self._phase not in (None, phase):  # the phase before ended: keep its last line
            self.console.print(self._line, highlight=False)
        self._phase, self._line = phase, line
        table = Table(title=Text(line + (f" — {note}" if note else "")), title_justify="left",
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
