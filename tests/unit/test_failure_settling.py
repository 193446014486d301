"""A file that runs past the probe deadline twice is judged unreadable; other read failures stay transient."""

from __future__ import annotations

from media.probe import READ_FAILED, TOO_SLOW, settle_failure

DEADLINE = READ_FAILED + "probe gave up after 121 s (deadline 120 s), before reading bytes 0-16384"
RESET = READ_FAILED + "read failed for bytes 0-16384: OSError: connection reset"


def test_a_second_deadline_for_the_same_version_becomes_a_verdict() -> None:
    settled = settle_failure(DEADLINE, DEADLINE)
    assert settled is not None and settled.startswith(TOO_SLOW)
    assert not settled.startswith(READ_FAILED)
    assert "deadline 120 s" in settled


def test_a_first_deadline_stays_a_read_failure_so_the_next_sync_tries_again() -> None:
    assert settle_failure(DEADLINE, None) == DEADLINE


def test_network_failures_never_become_verdicts_however_often_they_repeat() -> None:
    assert settle_failure(RESET, RESET) == RESET
    assert settle_failure(RESET, DEADLINE) == RESET
    assert settle_failure(DEADLINE, RESET) == DEADLINE


def test_success_and_parse_errors_pass_through() -> None:
    assert settle_failure(None, DEADLINE) is None
    assert settle_failure("truncated JPEG: no SOF marker", DEADLINE) == "truncated JPEG: no SOF marker"
