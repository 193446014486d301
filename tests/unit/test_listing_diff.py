"""The listing diff on small listings: what each key is called, and how vanished keys pair with new ones as moves.

The diff runs in steps through Parquet files so its memory does not grow with the bucket (benchmarks/listing_scale.py
measures that); these pin what it decides, whichever way it is computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from assets.listing import diff_listing, row_groups, write_listing
from resources.bucket import LISTING_SCHEMA
from resources.catalog import Connection

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def obj(key: str, size: int = 10, etag: str | None = "e", md5: str | None = None) -> dict[str, object]:
    return {"key": key, "size": size, "etag": etag, "last_modified": T0, "version": None, "content_md5": md5}


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=LISTING_SCHEMA), path)
    return path


def changes(tmp_path: Path, now: list[dict[str, object]], before: list[dict[str, object]] | None) -> dict[str, tuple]:
    listing = write(tmp_path / "listing.parquet", now)
    baseline = write(tmp_path / "baseline.parquet", before) if before is not None else tmp_path / "none.parquet"
    counts = diff_listing(listing, baseline, tmp_path / "changes.parquet")
    rows = pq.read_table(tmp_path / "changes.parquet").to_pylist()
    assert counts["listed"] == len(now) and counts["baseline_listed"] == len(before or [])
    return {r["key"]: (r["change"], r["moved_from"], r["moved_to"]) for r in rows}


def test_a_first_listing_is_all_new(tmp_path: Path) -> None:
    assert changes(tmp_path, [obj("a.jpg"), obj("b.jpg", etag="x")], None) == {
        "a.jpg": ("new", None, None),
        "b.jpg": ("new", None, None),
    }


def test_new_changed_unchanged_and_deleted(tmp_path: Path) -> None:
    before = [
        obj("same.jpg", etag="1"),
        obj("edit.jpg", etag="2"),
        obj("grow.jpg", etag="3"),
        obj("gone.jpg", etag="4"),
    ]
    now = [obj("same.jpg", etag="1"), obj("edit.jpg", etag="2b"), obj("grow.jpg", size=11, etag="3"), obj("add.jpg")]
    assert changes(tmp_path, now, before) == {
        "same.jpg": ("unchanged", None, None),
        "edit.jpg": ("changed", None, None),
        "grow.jpg": ("changed", None, None),
        "add.jpg": ("new", None, None),
        "gone.jpg": ("deleted", None, None),
    }


def test_moves_pair_by_size_and_fingerprint_in_key_order(tmp_path: Path) -> None:
    # Two vanished copies of one content, three new ones: the k-th of each side in key order pair up, the third new
    # key stays new. A same-fingerprint key of another size and a key without any fingerprint never pair.
    before = [obj("old/b.jpg", etag="c"), obj("old/a.jpg", etag="c"), obj("old/s.jpg", size=5, etag="d")]
    before += [obj("old/none.jpg", etag=None)]
    now = [obj("new/z.jpg", etag="c"), obj("new/x.jpg", etag="c"), obj("new/y.jpg", etag="c")]
    now += [obj("new/s.jpg", size=6, etag="d"), obj("new/none.jpg", etag=None)]
    assert changes(tmp_path, now, before) == {
        "new/x.jpg": ("new", "old/a.jpg", None),
        "new/y.jpg": ("new", "old/b.jpg", None),
        "new/z.jpg": ("new", None, None),
        "new/s.jpg": ("new", None, None),
        "new/none.jpg": ("new", None, None),
        "old/a.jpg": ("deleted", None, "new/x.jpg"),
        "old/b.jpg": ("deleted", None, "new/y.jpg"),
        "old/s.jpg": ("deleted", None, None),
        "old/none.jpg": ("deleted", None, None),
    }


def test_the_content_md5_is_the_fingerprint_when_the_provider_gives_one(tmp_path: Path) -> None:
    before = [obj("old.jpg", etag="multipart-1", md5="m")]
    now = [obj("new.jpg", etag="multipart-2", md5="m")]
    assert changes(tmp_path, now, before)["new.jpg"] == ("new", "old.jpg", None)


class Pages:
    """A provider that serves `n` keys in pages of `page`."""

    def __init__(self, n: int, page: int) -> None:
        self.n, self.page = n, page

    def iter_listing(self, prefix: str, page_size: int = 1000) -> Iterator[pa.RecordBatch]:
        for start in range(0, self.n, self.page):
            rows = [obj(f"{prefix}{i:06d}.jpg") for i in range(start, min(self.n, start + self.page))]
            yield pa.RecordBatch.from_pylist(rows, schema=LISTING_SCHEMA)


def test_a_listing_is_written_in_row_groups_of_many_pages(tmp_path: Path) -> None:
    """Pages of 1000 used to become 1000-row groups; every later scan of the listing held all their metadata."""
    conn = Connection(name="groups", provider="local", root=".", prefix="p/")
    seen = write_listing(Pages(40_000, 1000), conn, tmp_path / "listing.parquet")  # type: ignore[arg-type]
    meta = pq.ParquetFile(tmp_path / "listing.parquet").metadata
    assert seen["listed"] == meta.num_rows == 40_000
    assert meta.num_row_groups == 3  # a group closes once it holds 16,384 rows: 17 pages, 17 pages, the rest
    assert pq.read_table(tmp_path / "listing.parquet").column("key").to_pylist() == [
        f"p/{i:06d}.jpg" for i in range(40_000)
    ]
    assert [t.num_rows for t in row_groups(iter([]))] == []
