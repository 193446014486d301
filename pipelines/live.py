"""What a person sees while `bucket-sync sync` runs: something from the first second, a live bar per long stage on a
terminal, and the run's messages as single lines; never a stack trace unless `-v` asked for Dagster's own log.

The view is drawn by the CLI process from what the steps report in this process (assets/progress.py) and from the
run's events as the instance stores them (runner.run_sync's `on_event`), never from the steps' own output: Dagster
captures a step's stdout and stderr into its compute logs by pointing file descriptors 1 and 2 at a file while the
step runs. So the view writes to a copy of the terminal's descriptor, taken before the run starts; what it prints
lands on the terminal, never in a compute log.

This module imports rich only: it is running (and the spinner turning) while Dagster is still being imported.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from pipelines.terminal import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from assets.progress import ProgressReport


#: The view drawing now, so an error printed by the CLI can first stop its bar (see cli._fail).
_active: LiveView | None = None


def stop_active() -> None:
    """Stop the live bar, if one is drawing: what is printed next must not be drawn over."""
    if _active is not None:
        _active.stop()


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def describe(report: ProgressReport) -> str:
    """The figures beside a stage's bar: `120/1,400 · 31/s · ETA 0:00:41`, or `2,000 objects · 2 pages`."""
    rate = report.done / report.elapsed_s if report.elapsed_s > 0 else 0.0
    speed = f"{rate:.1f}/s" if rate < 10 else f"{rate:,.0f}/s"
    if report.total is None:
        if not report.done and not report.pages:
            return f"{report.elapsed_s:.0f}s"
        pages = f" · {report.pages:,} page{'s' if report.pages != 1 else ''}" if report.pages else ""
        return f"{report.done:,} {report.unit}{pages} · {speed}"
    if report.done >= report.total:
        eta = _eta(0)
    else:
        eta = _eta((report.total - report.done) / rate) if rate > 0 else "-:--:--"
    return f"{report.done:,}/{report.total:,} · {speed} · ETA {eta}"


class LiveView:
    """The terminal side of one CLI sync. `bar`: draw live bars (only on a terminal); `line_level`: the lowest level
    of the steps' own messages printed as lines (WARNING prints warnings and errors only); `verbose`: Dagster's
    console log prints everything itself, so the view adds nothing but the spinner-free run.
    """

    def __init__(self, *, bar: bool, line_level: int = logging.WARNING, verbose: bool = False) -> None:
        self.verbose = verbose
        self.line_level = line_level
        self._stream: IO[str] | None = None
        self._console: Console | None = None
        self._progress: Progress | None = None
        self._status: TaskID | None = None
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._bar = bar and not verbose and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    # -- lifetime ---------------------------------------------------------------------------------------------------

    def __enter__(self) -> LiveView:
        from rich.console import Console

        # A copy of stderr's descriptor: Dagster's compute-log capture re-points descriptor 2 while a step runs.
        try:
            fd = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # stderr is no file (a test harness): no capture to escape
            fd = None
        if fd is not None:
            self._stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
        self._console = Console(file=self._stream or sys.stderr, highlight=False, soft_wrap=False)
        if self._bar:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=20),
                TextColumn("{task.fields[detail]}"),
                console=self._console,
                transient=True,
                refresh_per_second=10,
            )
            self._progress.start()
            self._status = self._progress.add_task("starting Dagster…", total=None, detail="")
        global _active
        _active = self
        return self

    def stop(self) -> None:
        """Stop drawing (idempotent); lines still print, after the bar's last frame is erased."""
        with self._lock:
            progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        global _active
        _active = None
        self.stop()
        if self._stream is not None:
            self._stream.flush()
            self._stream.close()

    # -- what the run tells ---------------------------------------------------------------------------------------

    def line(self, text: str) -> None:
        """One line above the bars (or on its own, without them)."""
        if self._console is None:
            return
        self._console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    def on_event(self, entry: Any) -> None:
        """An event of the run (a dagster EventLogEntry), as the instance stores it."""
        if self.verbose:
            return  # Dagster's console log prints every event itself
        event = entry.dagster_event
        if event is not None:
            progress = self._progress
            if event.event_type_value == "STEP_START" and progress is not None and self._status is not None:
                progress.update(self._status, description=f"{event.step_key}…")
            return
        # Errors are left out: a step's own error becomes its failure, which the CLI states last as the cause, and
        # the engine's errors only say which steps did not run because of it.
        if self.line_level <= entry.level < logging.ERROR and entry.user_message:
            step = f"{entry.step_key}: " if entry.step_key else ""
            kind = "warning: " if entry.level >= logging.WARNING else ""
            self.line(f"{kind}{step}{' '.join(entry.user_message.split())}")

    def on_progress(self, report: ProgressReport) -> None:
        """A stage's progress, reported by a step in this process."""
        with self._lock:
            if self._progress is None:
                return
            task = self._tasks.get(report.label)
            if task is None:
                task = self._progress.add_task(report.label, total=report.total, detail="")
                self._tasks[report.label] = task
            self._progress.update(task, completed=report.done, total=report.total, detail=describe(report))
            if report.finished:
                # Drawn once more before it goes, so even a stage shorter than a refresh shows its figures.
                self._progress.refresh()
                self._progress.remove_task(task)
                del self._tasks[report.label]
