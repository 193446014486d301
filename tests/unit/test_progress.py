"""Progress lines in the run log: done, total, percentage and rate, at most every interval, and once at the end."""

from __future__ import annotations

import pytest

from assets import progress as progress_module
from assets.progress import Progress, ProgressReport, watching


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_reports_on_its_interval_and_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    log = Log()
    with Progress(log, "probing 'demo'", total=4, every_s=5.0) as progress:
        for at in (1.0, 2.0, 6.0, 8.0):  # only the third advance comes 5 s after the last report
            now[0] = at
            progress.advance()
    assert log.lines == ["probing 'demo': 3/4 (75%), 0.5/s", "probing 'demo': 4/4 (100%), 0.5/s"]


def test_watchers_hear_every_stage_and_its_end_while_the_run_log_gets_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    heard: list[ProgressReport] = []
    log = Log()
    with watching(heard.append), Progress(log, "listing 'demo'", total=None, every_s=5.0) as listing:
        for at in (1.0, 6.0):
            now[0] = at
            listing.advance(1000, pages=1)
    assert log.lines == [
        "listing 'demo': 2,000 objects so far, 2 pages, 333/s",
        "listing 'demo': 2,000 objects, 2 pages, 333/s",
    ]
    assert [(r.done, r.pages, r.total, r.finished) for r in heard] == [
        (0, 0, None, False),
        (1000, 1, None, False),
        (2000, 2, None, False),
        (2000, 2, None, True),
    ]
    with Progress(Log(), "probing", total=3):  # nobody watches any more
        pass
    assert len(heard) == 4


def test_nothing_is_reported_for_empty_work() -> None:
    log = Log()
    with Progress(log, "probing", total=0):
        pass
    assert log.lines == []
