"""Progress lines in the run log: done, total, percentage and rate, at most every interval, and once at the end."""

from __future__ import annotations

import pytest

from assets import progress as progress_module
from assets.progress import Progress


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


def test_no_bar_outside_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKET_SYNC_PROGRESS", "bar")
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False)
    assert Progress(Log(), "x", total=10)._bar is None


def test_nothing_is_reported_for_empty_work() -> None:
    log = Log()
    with Progress(log, "probing", total=0):
        pass
    assert log.lines == []
