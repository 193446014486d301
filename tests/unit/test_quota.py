"""Quota admission (assets/quota.py) over real Parquet listings, diffed by the real diff, sync after sync; and the
catalog's quota fields.

Each `Bucket.sync` lists what the bucket holds, diffs it against the baseline (the admitted listing of the sync
before, as publishing makes it), applies the quota, and keeps the admitted listing as the next baseline.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.listing import diff_listing
from assets.quota import QuotaState, admit
from checks.quota import quota_description, quota_metadata
from resources.bucket import LISTING_SCHEMA
from resources.catalog import load_catalog
from resources.catalog_yaml import CatalogError


class Bucket:
    """A bucket's listing, synced with a quota the way `object_listing` and publishing do it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.objects: dict[str, tuple[int, str]] = {}  # key -> (size, etag)
        self.baseline = folder / "baseline.parquet"
        self.changes = folder / "changes.parquet"
        self.skipped = folder / "skipped.parquet"

    def put(self, key: str, size: int = 10, etag: str | None = None) -> None:
        self.objects[key] = (size, etag or f"etag-{key}")

    def sync(self, max_objects: int | None = None, max_bytes: int | None = None) -> QuotaState:
        listing = self.folder / "listing.parquet"
        when = datetime(2026, 1, 1, tzinfo=UTC)
        rows = [  # listed in reverse key order: admission must not depend on the provider's order
            {"key": k, "size": s, "etag": e, "last_modified": when, "version": None, "content_md5": None}
            for k, (s, e) in sorted(self.objects.items(), reverse=True)
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=LISTING_SCHEMA), listing)
        diff_listing(listing, self.baseline, self.changes)
        state = admit(listing, self.changes, self.skipped, max_objects, max_bytes)
        shutil.copy(listing, self.baseline)  # published after the index commit
        return state

    def keys(self, path: Path, where: str = "true") -> list[str]:
        sql = f"SELECT key FROM read_parquet($p) WHERE {where} ORDER BY key"
        return [k for (k,) in duckdb.execute(sql, {"p": str(path)}).fetchall()]

    @property
    def admitted(self) -> list[str]:
        """What the index holds after the sync: every listed key of the changes."""
        return self.keys(self.changes, "change <> 'deleted'")

    @property
    def skipped_keys(self) -> list[str]:
        return self.keys(self.skipped)


@pytest.fixture
def bucket(tmp_path: Path) -> Bucket:
    return Bucket(tmp_path)


def test_admits_the_first_keys_in_key_order_and_skips_the_rest(bucket: Bucket) -> None:
    for key in ("e.jpg", "a.jpg", "c.jpg", "b.jpg", "d.jpg"):
        bucket.put(key, size=100)
    state = bucket.sync(max_objects=3)
    assert bucket.admitted == ["a.jpg", "b.jpg", "c.jpg"]
    assert bucket.skipped_keys == ["d.jpg", "e.jpg"]
    assert (state.admitted, state.admitted_bytes, state.skipped, state.skipped_bytes) == (3, 300, 2, 200)
    assert state.examples == [("d.jpg", 100), ("e.jpg", 100)]
    assert state.exceeded == ["max_objects=3"]
    # The baseline the next sync diffs against holds what the index holds, not what was skipped.
    assert bucket.keys(bucket.baseline) == ["a.jpg", "b.jpg", "c.jpg"]
    # The same bucket synced again decides the same way.
    bucket.sync(max_objects=3)
    assert bucket.admitted == ["a.jpg", "b.jpg", "c.jpg"] and bucket.skipped_keys == ["d.jpg", "e.jpg"]


def test_indexed_objects_keep_their_place_before_new_keys_that_sort_earlier(bucket: Bucket) -> None:
    for key in ("b.jpg", "c.jpg", "d.jpg"):
        bucket.put(key)
    bucket.sync(max_objects=2)
    assert bucket.admitted == ["b.jpg", "c.jpg"]
    bucket.put("a.jpg")  # sorts first, arrives later
    bucket.put("c.jpg", size=11)  # an indexed object that changed stays indexed
    state = bucket.sync(max_objects=2)
    assert bucket.admitted == ["b.jpg", "c.jpg"]
    assert bucket.skipped_keys == ["a.jpg", "d.jpg"]
    changes = dict(duckdb.execute("SELECT key, change FROM read_parquet($p)", {"p": str(bucket.changes)}).fetchall())
    assert changes == {"b.jpg": "unchanged", "c.jpg": "changed"}, "skipped keys never reach the probes"
    assert (state.admitted, state.skipped) == (2, 2)


def test_bytes_cap_admits_a_prefix_in_key_order(bucket: Bucket) -> None:
    for key, size in (("a", 10), ("b", 20), ("c", 30), ("d", 1)):
        bucket.put(key, size=size)
    state = bucket.sync(max_bytes=35)
    # a + b = 30 fits; c would make 60. d would fit on its own, but admission stops at the first key that does not:
    # otherwise a small new key would slip in ahead of c at every sync, and the order would not be stable.
    assert bucket.admitted == ["a", "b"]
    assert bucket.skipped_keys == ["c", "d"]
    assert (state.admitted_bytes, state.skipped_bytes, state.exceeded) == (30, 31, ["max_bytes=35"])
    both = bucket.sync(max_objects=1, max_bytes=35)  # the tighter of the two limits decides
    assert bucket.admitted == ["a", "b"], "lowering max_objects keeps what is indexed"
    assert both.exceeded == ["max_objects=1", "max_bytes=35"]


def test_exactly_at_the_quota_skips_nothing(bucket: Bucket) -> None:
    for key in ("a", "b", "c"):
        bucket.put(key, size=5)
    state = bucket.sync(max_objects=3, max_bytes=15)
    assert bucket.admitted == ["a", "b", "c"] and bucket.skipped_keys == []
    assert (state.admitted, state.skipped, state.exceeded) == (3, 0, [])


def test_a_deletion_frees_room_for_the_next_key_in_order(bucket: Bucket) -> None:
    for key in ("a", "b", "c", "d", "e"):
        bucket.put(key)
    bucket.sync(max_objects=3)
    del bucket.objects["b"]
    bucket.sync(max_objects=3)
    assert bucket.admitted == ["a", "c", "d"]
    assert bucket.skipped_keys == ["e"]
    tombstones = bucket.keys(bucket.changes, "change = 'deleted'")
    assert tombstones == ["b"], "the deletion still reaches the index"


def test_raising_the_quota_admits_the_skipped_keys_on_the_next_sync(bucket: Bucket) -> None:
    for key in ("a", "b", "c", "d"):
        bucket.put(key)
    bucket.sync(max_objects=2)
    state = bucket.sync(max_objects=10)
    assert bucket.admitted == ["a", "b", "c", "d"] and bucket.skipped_keys == []
    assert bucket.keys(bucket.changes, "change = 'new'") == ["c", "d"], "probed now, as new objects"
    assert state.skipped == 0
    bucket.sync()  # no quota at all
    assert bucket.skipped_keys == [] and bucket.admitted == ["a", "b", "c", "d"]


def test_lowering_the_quota_evicts_nothing_already_indexed(bucket: Bucket) -> None:
    for key in ("a", "b", "c", "d"):
        bucket.put(key)
    bucket.sync(max_objects=4)
    bucket.put("e")
    state = bucket.sync(max_objects=2)
    assert bucket.admitted == ["a", "b", "c", "d"]
    assert bucket.skipped_keys == ["e"]
    assert (state.admitted, state.skipped, state.exceeded) == (4, 1, ["max_objects=2"])
    assert bucket.keys(bucket.changes, "change = 'deleted'") == [], "nothing is tombstoned for a quota"


def test_a_move_of_an_indexed_object_keeps_its_place(bucket: Bucket) -> None:
    for key in ("a", "b", "c"):
        bucket.put(key, etag=f"content-{key}")
    bucket.sync(max_objects=2)
    del bucket.objects["b"]
    bucket.put("z", etag="content-b")  # b renamed to z: same size and etag
    bucket.sync(max_objects=2)
    assert bucket.admitted == ["a", "z"]
    assert bucket.skipped_keys == ["c"]
    moved = duckdb.execute(
        "SELECT key, moved_to FROM read_parquet($p) WHERE change = 'deleted'", {"p": str(bucket.changes)}
    ).fetchall()
    assert moved == [("b", "z")]


def test_without_a_quota_nothing_is_rewritten_or_skipped(bucket: Bucket) -> None:
    for key in ("a", "b"):
        bucket.put(key)
    state = bucket.sync()
    assert not state.limited and state.skipped == 0
    assert bucket.admitted == ["a", "b"] and bucket.skipped_keys == []
    assert pq.read_schema(bucket.skipped).names == ["key", "size", "etag", "last_modified"]


def test_keys_with_quotes_and_sql_are_data_not_text(bucket: Bucket) -> None:
    keys = ["a'b.jpg", "c'); DROP TABLE x; --.jpg", "z.jpg"]
    for key in keys:
        bucket.put(key)
    bucket.sync(max_objects=1)
    assert bucket.admitted == [keys[0]]
    assert bucket.skipped_keys == keys[1:]


def test_the_check_says_how_far_over_and_where_to_raise_it() -> None:
    state = QuotaState(
        max_objects=3, admitted=3, admitted_bytes=300, skipped=2, skipped_bytes=2048, examples=[("d.jpg", 1024)]
    )
    text = quota_description(state, "photos", "/etc/connections.yaml")
    assert text == (
        "2 objects (2,048 bytes) over max_objects=3 for connection 'photos': raise `max_objects` in "
        "/etc/connections.yaml or narrow `prefix`/`include`"
    )
    metadata = quota_metadata(state)
    assert metadata["over_quota"].value == 2 and metadata["max_objects"].value == 3
    assert metadata["first_skipped"].value.records[0].data == {"key": "d.jpg", "size": 1024}
    within = QuotaState(max_bytes=1000, admitted=2, admitted_bytes=200)
    assert quota_description(within, "photos", "c.yaml") == (
        "connection 'photos' is within its quota: 200 bytes of max_bytes=1000"
    )
    assert "no quota set" in quota_description(QuotaState(), "photos", "c.yaml")
    lowered = QuotaState(max_objects=2, admitted=4, admitted_bytes=40)
    assert quota_description(lowered, "photos", "c.yaml") == (
        "connection 'photos' holds 4 objects (40 bytes), over max_objects=2: all were indexed before the quota was "
        "lowered and are kept; new objects are skipped until some are deleted or the quota in c.yaml is raised"
    )


def _catalog(tmp_path: Path, fields: str) -> Path:
    path = tmp_path / "connections.yaml"
    path.write_text(f"connections:\n  - name: photos\n    provider: local\n    root: data\n{fields}")
    return path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("    max_objects: 0\n", "field 'max_objects': 0 is not positive"),
        ("    max_objects: -5\n", "field 'max_objects': -5 is not positive"),
        ("    max_objects: lots\n", "field 'max_objects': 'lots' is not a whole number"),
        ("    max_objects: 2.5\n", "field 'max_objects': 2.5 is not a count"),
        ("    max_objects: true\n", "field 'max_objects': True is not a count"),
        ("    max_bytes: 0KB\n", "field 'max_bytes': '0KB' is not positive"),
        ("    max_bytes: huge\n", "field 'max_bytes': 'huge' is not a size"),
    ],
)
def test_catalog_refuses_a_quota_that_is_not_a_positive_number(tmp_path: Path, fields: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog(_catalog(tmp_path, fields))
    text = str(caught.value)
    assert "connection 'photos'" in text and message in text
    assert "remove the field for no limit" in text


def test_catalog_reads_quotas_with_units(tmp_path: Path) -> None:
    conn = load_catalog(_catalog(tmp_path, "    max_objects: 1000\n    max_bytes: 2GiB\n")).get("photos")
    assert (conn.max_objects, conn.max_bytes) == (1000, 2 * 1024**3)
    plain = load_catalog(_catalog(tmp_path, "    max_bytes: 5000\n")).get("photos")
    assert (plain.max_objects, plain.max_bytes) == (None, 5000)
