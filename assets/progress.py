"""Progress for long steps: periodic lines in the Dagster run log, and a live bar when a person watches a terminal.

The bar is shown only when the CLI asked for it (BUCKET_SYNC_PROGRESS=bar) and stderr is a terminal, so runs launched
from the UI or a daemon never write terminal control codes into their logs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any


class Progress:
    """Counts done items against a total and reports every `every_s` seconds (and once at the end)."""

    def __init__(self, log: logging.Logger | Any, label: str, total: int, every_s: float = 5.0) -> None:
        self.log, self.label, self.total, self.every_s = log, label, total, every_s
        self.done = 0
        self._started = self._last = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        if os.environ.get("BUCKET_SYNC_PROGRESS") == "bar" and sys.stderr.isatty() and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
            )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc_type is None and self.total:
            self._report()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._report()

    def _report(self) -> None:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = f"{self.rate:.1f}" if self.rate < 10 else f"{self.rate:.0f}"
        self.log.info(f"{self.label}: {self.done}/{self.total} ({pct:.0f}%), {rate}/s")
