"""The figures beside a stage's bar, and the cause sentence a failed step's error becomes on the CLI's last line."""

from __future__ import annotations

from assets.progress import ProgressReport
from pipelines.live import describe
from pipelines.runner import cause_sentence


def test_a_listing_counts_objects_and_pages_and_a_probe_run_shows_rate_and_eta() -> None:
    assert describe(ProgressReport("listing", 0, None, elapsed_s=2.4)) == "2s"
    assert (
        describe(ProgressReport("listing", 2500, None, pages=3, elapsed_s=2.0)) == "2,500 objects · 3 pages · 1,250/s"
    )
    assert describe(ProgressReport("probing", 30, 120, elapsed_s=10.0)) == "30/120 · 3.0/s · ETA 0:00:30"
    assert describe(ProgressReport("probing", 0, 120, elapsed_s=0.0)) == "0/120 · 0.0/s · ETA -:--:--"
    assert describe(ProgressReport("probing", 120, 120, elapsed_s=4.0)).endswith("ETA 0:00:00")


def test_the_cause_sentence_drops_dagsters_wrapper_and_keeps_a_library_error_s_class() -> None:
    wrapped = "dagster._core.definitions.events.Failure: connection 'x': listing failed;\n  check it\n"
    assert cause_sentence(wrapped) == "connection 'x': listing failed; check it"
    assert cause_sentence("OSError: File name too long") == "OSError: File name too long"
