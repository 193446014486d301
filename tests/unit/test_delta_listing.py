"""The delta listing's merge rules, and how the index records a sync's kind: pure code and a real DuckDB file.

The bucket here is an in-memory stand-in for `Bucket.head` only: what is under test is how the HEAD answers (a row,
None, an error) become a listing, which no provider behaviour changes. The providers' own `head` is exercised against
the emulators by tests/integration/test_delta_sync.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.delta import write_delta_listing
from assets.listing import diff_listing, media_only
from pipelines.summary import SyncSummary
from resources.bucket import LISTING_SCHEMA, BucketError
from resources.catalog import Connection
from resources.index import SCHEMA
from resources.index_resource import MediaIndex
from tests.unit.test_facts_schema import apply, every_fact_set, write_sync

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


def row(key: str, etag: str, size: int = 10) -> dict[str, object]:
    return {"key": key, "size": size, "etag": etag, "last_modified": T0, "version": None, "content_md5": etag}


class HeadOnly:
    """Answers `head` from a dict: a row, None (not found), or an exception to raise. Counts the calls."""

    def __init__(self, answers: dict[str, dict[str, object] | Exception | None]) -> None:
        self.answers, self.calls = answers, Counter[str]()

    def head(self, key: str) -> dict[str, object] | None:
        self.calls[key] += 1
        answer = self.answers.get(key)
        if isinstance(answer, Exception):
            raise answer
        return answer


def baseline(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "baseline.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=LISTING_SCHEMA), path)
    return path


def keys_of(path: Path) -> dict[str, str]:
    return {r["key"]: r["etag"] for r in pq.read_table(path).to_pylist()}


def test_the_head_decides_and_unnamed_rows_carry_forward(tmp_path: Path) -> None:
    base = baseline(tmp_path, [row("p/a.jpg", "a1"), row("p/b.jpg", "b1"), row("p/c.jpg", "c1"), row("p/d.jpg", "d1")])
    bucket = HeadOnly(
        {
            "p/a.jpg": row("p/a.jpg", "a2"),  # overwritten
            "p/b.jpg": None,  # deleted ("created" in a stale event: the HEAD says it is gone)
            "p/c.jpg": BucketError("connection 'x': reading the state of 'p/c.jpg' failed: 503"),
            "p/new.jpg": row("p/new.jpg", "n1"),
            "p/moved.jpg": row("p/moved.jpg", "d1"),  # d.jpg's content under a new key
            "p/d.jpg": None,
        }
    )
    conn = Connection(name="x", provider="local", root=str(tmp_path), prefix="p/")
    stats: Counter[str] = Counter()
    names = ["p/a.jpg", "p/b.jpg", "p/c.jpg", "p/d.jpg", "p/moved.jpg", "p/new.jpg", "p/dir/", "q/outside.jpg"]
    target = tmp_path / "listing.parquet"
    outcome = write_delta_listing(bucket, names, "p/", lambda b: media_only(b, conn, stats), base, target)  # type: ignore[arg-type]

    assert keys_of(target) == {"p/a.jpg": "a2", "p/c.jpg": "c1", "p/new.jpg": "n1", "p/moved.jpg": "d1"}
    assert set(bucket.calls) == {"p/a.jpg", "p/b.jpg", "p/c.jpg", "p/d.jpg", "p/moved.jpg", "p/new.jpg"}
    assert max(bucket.calls.values()) == 1  # one HEAD per key; none for a folder marker or a key outside the prefix
    assert (outcome.event_keys, outcome.outside_prefix, outcome.heads) == (8, 1, 6)
    assert (outcome.present, outcome.absent, list(outcome.failed)) == (3, 2, ["p/c.jpg"])
    assert stats["folder_markers"] == 1
    assert pq.read_schema(target).remove_metadata().equals(LISTING_SCHEMA)  # the listing's own schema, as written

    counts = diff_listing(target, base, tmp_path / "changes.parquet")
    assert (counts["new"], counts["changed"], counts["unchanged"], counts["deleted"], counts["moved"]) == (
        1,
        1,
        1,
        1,
        1,
    )


def test_a_key_the_filter_refuses_leaves_the_listing_unread(tmp_path: Path) -> None:
    """A full listing would not list an excluded key, so a delta drops its baseline row too, without a HEAD."""
    base = baseline(tmp_path, [row("raw/a.jpg", "a1"), row("raw/skip.tmp", "s1")])
    bucket = HeadOnly({})
    conn = Connection(name="x", provider="local", root=str(tmp_path), exclude=["*.tmp"])
    target = tmp_path / "listing.parquet"
    stats: Counter[str] = Counter()
    write_delta_listing(bucket, ["raw/skip.tmp"], "", lambda b: media_only(b, conn, stats), base, target)  # type: ignore[arg-type]
    assert keys_of(target) == {"raw/a.jpg": "a1"}
    assert not bucket.calls and stats["filtered_out"] == 1


def test_an_index_from_before_sync_kinds_gains_the_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "index.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.execute("ALTER TABLE syncs DROP COLUMN sync_kind")
    con.execute("ALTER TABLE syncs DROP COLUMN event_keys")
    con.execute(
        "INSERT INTO syncs VALUES ('clips', 'old-run', $t, $t, false, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0, 10, 0, 0)",
        {"t": T0 - timedelta(days=1)},
    )
    con.close()
    index = MediaIndex(url=str(path))
    apply(index, write_sync(tmp_path / "sync", every_fact_set(1), etag="e1", change="new"), "run-1")
    with index.connect(read_only=True) as con:
        rows = con.execute("SELECT run_id, sync_kind, event_keys FROM syncs ORDER BY run_id").fetchall()
    assert rows == [("old-run", None, None), ("run-1", "full", 0)]


@pytest.mark.parametrize(
    ("kind", "keys", "said"),
    [
        ("delta", 7, "delta, 7 event keys read by HEAD; the bucket was not listed"),
        ("full", 0, "full (the bucket was listed)"),
        (None, None, "full (the bucket was listed)"),  # an index from before sync kinds were recorded
    ],
)
def test_the_sync_summary_says_which_kind_of_sync_ran(kind: str | None, keys: int | None, said: str) -> None:
    last = {
        "started_at": T0, "finished_at": T0 + timedelta(seconds=2), "listed": 5, "new": 1, "changed": 0,
        "unchanged": 4, "deleted": 0, "moved": 0, "probed": 1, "carried": 4, "accepted": 5, "bytes_stored": 100,
        "bytes_read": 10, "requests": 1, "sync_kind": kind, "event_keys": keys,
    }  # fmt: skip
    summary = SyncSummary("clips", last, {}, 0, "manifest.jsonl", 5, "index.duckdb")
    assert f"  sync           : {said}" in summary.render().splitlines()
