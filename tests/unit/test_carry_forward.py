"""What a sync may copy instead of recompute: the SQL that decides it says exactly what the Python rules say.

An unchanged or moved object's verdict is carried forward as a set operation (assets/probes.py), and the manifest is
written by DuckDB (assets/manifest.py). Each is only right while its SQL agrees with the Python it stands in for.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.manifest import HEADER, manifest_line, write_manifest
from assets.probes import PROBES_SCHEMA, snapshot_still_holds
from media.cvat import ADDRESSABLE_SQL, unaddressable_reason
from media.facts import MediaFacts
from media.probe import READ_FAILED
from media.rules import PROFILES, judge, verdict_travels_sql

KEYS = [
    "a/b.jpg",
    "b.jpg",
    "deep/er/b.jpg",
    "other/c.JPG",
    "x/b.png",
    "x/b.jpg.mov",
    "/lead.jpg",
    "a//b.jpg",
    "a/./b.jpg",
    "a/../b.jpg",
    "../b.jpg",
    "a/b.jpg/.",
    "c/b.jpg/.",
    "ctl/\x1bb.jpg",
    "del/b\x7f.jpg",
    "é/ü b.jpg",
    "q/it's b.jpg",
    "a/.hidden",
    "a/...",
    "..a/b.jpg",
    "a/b..",
]

FACTS = [
    MediaFacts(kind="image", format="jpeg", width=40, height=30, orientation=6, display_width=30, display_height=40),
    MediaFacts(kind="image", format="png", width=40, height=30),
    MediaFacts(kind="image", format="gif", width=40, height=30),
    MediaFacts(kind="video", format="mp4", width=64, height=48, major_brand="isom", pix_fmt="yuv444p", codec="avc1"),
    MediaFacts(kind="video", format="mov", width=64, height=48, major_brand="qt  ", pix_fmt=None, codec="hvc1"),
    MediaFacts(kind="other"),
    MediaFacts(kind="image", format="jpeg", error="truncated JPEG: no SOF marker"),
]


@pytest.mark.parametrize("key", KEYS)
def test_the_sql_addressability_is_the_python_one(key: str) -> None:
    sql = ADDRESSABLE_SQL.format(key="k")
    (addressable,) = duckdb.execute(f"SELECT {sql} FROM (SELECT $k AS k)", {"k": key}).fetchone()
    assert addressable == (unaddressable_reason(key) is None)


def test_a_verdict_travels_with_a_move_only_where_no_rule_could_tell_the_keys_apart() -> None:
    """Every rule, every profile: where the SQL lets a verdict travel, judging the new key gives the same findings.

    Only the fixes differ, as they name each object's full key: that is why carry_verdicts lets only a clean verdict
    travel, and judges an object with findings again under its new key."""
    pairs = [(old, new) for old in KEYS for new in KEYS if old != new]
    con = duckdb.connect()
    con.register("pairs", pa.table({"old": [o for o, _ in pairs], "new": [n for _, n in pairs]}))
    travels = con.execute(f"SELECT old, new FROM pairs WHERE {verdict_travels_sql('old', 'new')}").fetchall()
    assert ("a/b.jpg", "deep/er/b.jpg") in travels and ("a/b.jpg", "x/b.png") not in travels
    assert not any(unaddressable_reason(k) for pair in travels for k in pair)
    for old, new in travels:
        for profile in PROFILES.values():
            for facts in FACTS:
                found = [(v.rule, v.severity, v.message) for v in judge(facts, new, profile)]
                assert found == [(v.rule, v.severity, v.message) for v in judge(facts, old, profile)], (old, new)
                assert all(
                    shlex.quote(new) in v.remediation for v in judge(facts, new, profile) if v.rule != "readable"
                )


class _Conn:
    """The one thing manifest_line asks of a connection."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def relative_key(self, key: str) -> str:
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key


@pytest.mark.parametrize("prefix", ["", "data/"])
def test_the_manifest_duckdb_writes_is_the_one_python_would(tmp_path: Path, prefix: str) -> None:
    keys = [
        "data/z.jpg",
        "data/a/b.JPG",
        'data/quote"and\\slash.jpg',
        "data/é/ü b.jpeg",
        "data/emoji😀.png",
        "data/line\u2028sep.jpg",
        "data/x.tar.gz",
        "data/noext",
        "data/trailing.",
        "data/dir.d/.hidden",
        "data/B.jpg",
        "data/b.jpg",
    ]
    rows = [
        {"key": k, "size": 1, "accepted": True, "kind": "image", "manifest_width": 10 + i, "manifest_height": 20 + i}
        for i, k in enumerate(keys)
    ]
    rows += [
        {"key": "data/rejected.jpg", "size": 1, "accepted": False, "kind": "image"},
        {"key": "data/clip.mp4", "size": 1, "accepted": True, "kind": "video"},
    ]
    probes = tmp_path / "probes.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=PROBES_SCHEMA), probes)
    target = tmp_path / "manifest.jsonl"
    assert write_manifest(duckdb.connect(), probes, prefix, target) == len(keys)
    conn = _Conn(prefix)
    expected = (
        [json.dumps(line, separators=(",", ":")) for line in HEADER]
        + [
            manifest_line(conn, r["key"], r["manifest_width"], r["manifest_height"])  # type: ignore[arg-type]
            for r in sorted(rows[: len(keys)], key=lambda r: r["key"])
        ]
    )
    assert target.read_bytes().decode() == "".join(line + "\n" for line in expected)


def test_the_last_snapshot_is_kept_whole_only_when_it_is_exactly_this_listing(tmp_path: Path) -> None:
    """Any new, changed, vanished, unreadable or differently judged object sends the sync down the ordinary path."""
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    listing = [{"key": f"k{i}.jpg", "size": i, "etag": f"e{i}", "last_modified": when} for i in range(3)]
    judge = "strict@test"

    def holds(changes: list[dict[str, Any]], probes: list[dict[str, Any]]) -> bool:
        base = {"version": None, "content_md5": None, "moved_from": None, "moved_to": None, "change": "unchanged"}
        pq.write_table(pa.Table.from_pylist([{**base, **r} for r in changes]), tmp_path / "changes.parquet")
        full = [{"source": "carried", "kind": "image", "judged_by": judge, **r} for r in probes]
        pq.write_table(pa.Table.from_pylist(full, schema=PROBES_SCHEMA), tmp_path / "probes.parquet")
        return snapshot_still_holds(duckdb.connect(), tmp_path / "changes.parquet", tmp_path / "probes.parquet", judge)

    assert holds(listing, listing)
    assert not holds([*listing, {**listing[0], "key": "new.jpg", "change": "new"}], listing)
    assert not holds([{**listing[0], "etag": "e0-2", "change": "changed"}, *listing[1:]], listing)
    assert not holds([*listing[:2], {**listing[2], "change": "deleted"}], listing)
    assert not holds(listing, [*listing[:2], {**listing[2], "error": READ_FAILED + "connection reset"}])
    assert not holds(listing, [*listing[:2], {**listing[2], "judged_by": "strict@older"}])
    assert not holds(listing[:2], listing)  # the snapshot holds a key the listing lost
