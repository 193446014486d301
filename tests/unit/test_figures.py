"""Counts, byte sizes, plurals and dates as the summary, `status` and `query` print them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipelines.figures import count, moment, plural, size
from pipelines.table_view import address, cell


@pytest.mark.parametrize(("n", "shown"), [(0, "0"), (999, "999"), (1234, "1,234"), (12_345_678, "12,345,678")])
def test_counts_have_thousands_separators(n: int, shown: str) -> None:
    assert count(n) == shown


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 bytes"), (1, "1 byte"), (999, "999 bytes"), (1000, "1.0 kB"), (12_345_678, "12.3 MB"), (10**12, "1.0 TB")],
)
def test_bytes_are_decimal_units_with_one_decimal(n: int, shown: str) -> None:
    assert size(n) == shown


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 folder markers"), (1, "1 folder marker"), (2, "2 folder markers"), (1204, "1,204 folder markers")],
)
def test_plurals_agree_with_their_count(n: int, shown: str) -> None:
    assert plural(n, "folder marker") == shown
    assert plural(n, "index", "indices").endswith("index" if n == 1 else "indices")


def test_a_date_this_year_shows_day_and_minute_and_an_older_one_its_full_date() -> None:
    here = timezone(timedelta(hours=2))
    now = datetime(2026, 11, 30, 18, 0, tzinfo=here)
    at = datetime(2026, 11, 30, 15, 43, 12, 123456, tzinfo=UTC).astimezone(here)
    # The local time of the reader: the index stores UTC, a person reads their clock.
    assert moment(at, now=now) == at.astimezone().strftime("%b %d %H:%M")
    assert len(moment(at, now=now)) == 12
    assert moment(datetime(2025, 1, 2, 3, 4, tzinfo=UTC), now=now) == "2025-01-02"
    assert moment(None, now=now) == "never"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "NULL"),
        (True, "true"),
        (1234567, "1,234,567"),
        (21101.071428571428, "21,101.1"),
        (0.123456, "0.1235"),
        (datetime(2026, 11, 30, 17, 45, 39, 84527), "2026-11-30 17:45:39"),
        ("a/b.jpg", "a/b.jpg"),
    ],
)
def test_query_cells_are_formatted_for_reading(value: object, shown: str) -> None:
    assert cell(value) == shown


@pytest.mark.parametrize(
    ("provider", "location", "prefix", "shown"),
    [
        ("s3", "photos", "raw/", "s3://photos/raw/"),
        ("gcs", "photos", "", "gs://photos/"),
        ("azure", "media", "x/", "az://media/x/"),
        ("local", "/data/bucket", "", "/data/bucket"),
        ("local", "/data/bucket/", "2024/", "/data/bucket/2024/"),
    ],
)
def test_a_connection_reads_as_one_address(provider: str, location: str, prefix: str, shown: str) -> None:
    assert address(provider, location, prefix) == shown
