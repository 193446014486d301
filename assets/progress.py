"""Progress of long steps: periodic lines in the Dagster run log, and reports to whoever watches in this process.

The run log gets a line every few seconds from every step that can take long (listing, probing, writing the index),
so a run watched in the UI moves. A live bar is the CLI's business, not the step's: a step's stderr is captured into
Dagster's compute logs (it is no terminal), and a run launched from the UI has no terminal at all. So a step only
publishes `ProgressReport`s; `bucket-sync sync` subscribes with `watching()` (its steps run in its own process) and
draws them (pipelines/live.py). Nobody subscribed costs one empty-list check per report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class ProgressReport:
    """Where one stage of a step stands: `total` is None while unknown (a listing does not know its end)."""

    label: str
    done: int
    total: int | None
    unit: str = "objects"
    pages: int = 0
    elapsed_s: float = 0.0
    finished: bool = False


Watcher = Callable[[ProgressReport], None]
_watchers: list[Watcher] = []
_watchers_lock = threading.Lock()


@contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    """Send every report of the steps that run in this process to `watcher` while the block runs."""
    with _watchers_lock:
        _watchers.append(watcher)
    try:
        yield
    finally:
        with _watchers_lock:
            _watchers.remove(watcher)


def _publish(report: ProgressReport) -> None:
    if not _watchers:
        return
    with _watchers_lock:
        watchers = list(_watchers)
    for watcher in watchers:
        try:
            watcher(report)
        except Exception:  # a display that fails must never fail the step it watches
            logging.getLogger(__name__).debug("progress watcher failed", exc_info=True)


class Progress:
    """Counts done items (against a total, when known) and reports to the run log every `every_s` seconds and once
    at the end, and to this process's watchers up to ten times a second.

    `heartbeat` adds a line every `every_s` seconds from a timer, for work that cannot count (one DuckDB
    transaction), so a long step never goes quiet in the run log.
    """

    #: How often watchers hear of a change: enough for a smooth bar, far too rare to slow a probe loop.
    PUBLISH_EVERY_S = 0.1

    def __init__(
        self,
        log: logging.Logger | Any,
        label: str,
        total: int | None,
        every_s: float = 5.0,
        *,
        unit: str = "objects",
        heartbeat: bool = False,
    ) -> None:
        self.log, self.label, self.total, self.every_s, self.unit = log, label, total, every_s, unit
        self.done = 0
        self.pages = 0
        self._started = self._last = time.monotonic()
        self._published = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if heartbeat:
            self._ticker = threading.Thread(target=self._beat, name=f"progress: {label}", daemon=True)

    def __enter__(self) -> Progress:
        self._publish(force=True)
        if self._ticker is not None:
            self._ticker.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
        self._publish(force=True, finished=True)
        if exc_type is None and (self.total or self.total is None):
            self._report(final=True)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1, pages: int = 0) -> None:
        self.done += n
        self.pages += pages
        self._publish()
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._report()

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._report()

    def _publish(self, *, force: bool = False, finished: bool = False) -> None:
        if not _watchers:
            return
        now = time.monotonic()
        if not force and now - self._published < self.PUBLISH_EVERY_S:
            return
        self._published = now
        _publish(
            ProgressReport(
                label=self.label,
                done=self.done,
                total=self.total,
                unit=self.unit,
                pages=self.pages,
                elapsed_s=self.elapsed_s,
                finished=finished,
            )
        )

    def _report(self, final: bool = False) -> None:
        so_far = "" if final else " so far"
        rate = f"{self.rate:.1f}" if self.rate < 10 else f"{self.rate:.0f}"
        if self.total is not None:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            self.log.info(f"{self.label}: {self.done}/{self.total} ({pct:.0f}%), {rate}/s")
        elif self.done or self.pages:
            pages = f", {self.pages} page{'s' if self.pages != 1 else ''}" if self.pages else ""
            self.log.info(f"{self.label}: {self.done:,} {self.unit}{so_far}{pages}, {rate}/s")
        else:
            self.log.info(f"{self.label}: {self.elapsed_s:.0f}s{so_far}")
