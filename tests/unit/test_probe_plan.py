"""What media_probes decides to read: the plan over the listing diff and the facts it already has."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from assets.probes import PROBES_SCHEMA, _plan
from media.probe import READ_FAILED

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def changes(tmp: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp / "changes.parquet"
    base = {
        "etag": None,
        "last_modified": T0,
        "version": None,
        "content_md5": None,
        "moved_from": None,
        "moved_to": None,
    }
    pq.write_table(pa.Table.from_pylist([{**base, **r} for r in rows]), path)
    return path


def facts(tmp: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    path = tmp / name
    full = [{"last_modified": T0, "source": "probed", "probed_at": T0, "kind": "image", **r} for r in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=PROBES_SCHEMA), path)
    return path


def actions(con: Any) -> dict[str, tuple[str, str | None]]:
    return {k: (a, f) for k, a, f in con.execute("SELECT key, action, facts_key FROM plan").fetchall()}


def test_unchanged_carried_changed_probed_moved_follows_failed_reads_retried(tmp_path: Path) -> None:
    c = changes(
        tmp_path,
        [
            {"key": "same.jpg", "size": 10, "etag": "a", "change": "unchanged"},
            {"key": "edited.jpg", "size": 11, "etag": "b2", "change": "changed"},
            {"key": "new/place.jpg", "size": 12, "etag": "c", "change": "new", "moved_from": "old/place.jpg"},
            {"key": "old/place.jpg", "size": 12, "etag": "c", "change": "deleted", "moved_to": "new/place.jpg"},
            {"key": "flaky.jpg", "size": 13, "etag": "d", "change": "unchanged"},
            {"key": "fresh.jpg", "size": 14, "etag": "e", "change": "new"},
        ],
    )
    known = facts(
        tmp_path,
        "probes.parquet",
        [
            {"key": "same.jpg", "size": 10, "etag": "a"},
            {"key": "edited.jpg", "size": 11, "etag": "b1"},
            {"key": "old/place.jpg", "size": 12, "etag": "c"},
            {"key": "flaky.jpg", "size": 13, "etag": "d", "error": READ_FAILED + "connection reset"},
        ],
    )
    plan = actions(_plan(c, [known]))
    assert plan == {
        "same.jpg": ("carried", "same.jpg"),
        "edited.jpg": ("probe", None),
        "new/place.jpg": ("moved", "old/place.jpg"),
        "flaky.jpg": ("probe", None),
        "fresh.jpg": ("probe", None),
    }


def test_nothing_known_means_everything_is_probed(tmp_path: Path) -> None:
    c = changes(tmp_path, [{"key": "a.jpg", "size": 1, "change": "new"}, {"key": "b.jpg", "size": 2, "change": "new"}])
    assert {a for a, _ in actions(_plan(c, [])).values()} == {"probe"}


def test_the_newest_fact_wins_so_a_checkpoint_overrides_an_older_snapshot(tmp_path: Path) -> None:
    c = changes(tmp_path, [{"key": "x.jpg", "size": 5, "etag": "v2", "change": "changed"}])
    old = facts(tmp_path, "probes.parquet", [{"key": "x.jpg", "size": 5, "etag": "v1"}])
    later = T0 + dt.timedelta(hours=1)
    part = facts(tmp_path, "part.parquet", [{"key": "x.jpg", "size": 5, "etag": "v2", "probed_at": later}])
    assert actions(_plan(c, [part, old])) == {"x.jpg": ("carried", "x.jpg")}


def test_a_new_version_with_the_same_etag_size_and_mtime_is_probed_again(tmp_path: Path) -> None:
    """The local provider puts the change time in `version`: an in-place rewrite that restores the mtime is caught."""
    c = changes(tmp_path, [{"key": "x.jpg", "size": 5, "etag": "e", "version": "ctime-2", "change": "changed"}])
    old = facts(tmp_path, "probes.parquet", [{"key": "x.jpg", "size": 5, "etag": "e", "version": "ctime-1"}])
    assert actions(_plan(c, [old])) == {"x.jpg": ("probe", None)}
    same = facts(tmp_path, "same.parquet", [{"key": "x.jpg", "size": 5, "etag": "e", "version": "ctime-2"}])
    assert actions(_plan(c, [same])) == {"x.jpg": ("carried", "x.jpg")}


def test_facts_from_before_versions_are_read_again_not_misread(tmp_path: Path) -> None:
    """A probes snapshot written before the `version` column existed plans without error, and re-probes."""
    c = changes(tmp_path, [{"key": "x.jpg", "size": 5, "etag": "e", "version": "v", "change": "unchanged"}])
    legacy = tmp_path / "legacy.parquet"
    schema = pa.schema([f for f in PROBES_SCHEMA if f.name != "version"])
    pq.write_table(
        pa.Table.from_pylist([{"key": "x.jpg", "size": 5, "etag": "e", "last_modified": T0}], schema=schema), legacy
    )
    assert actions(_plan(c, [legacy])) == {"x.jpg": ("probe", None)}


def test_the_previous_read_failure_of_the_same_version_travels_with_the_row(tmp_path: Path) -> None:
    c = changes(
        tmp_path,
        [
            {"key": "slow.jpg", "size": 5, "etag": "a", "change": "unchanged"},
            {"key": "rewritten.jpg", "size": 6, "etag": "b2", "change": "changed"},
        ],
    )
    deadline = READ_FAILED + "probe gave up after 121 s (deadline 120 s), before reading bytes 0-16384"
    known = facts(
        tmp_path,
        "probes.parquet",
        [
            {"key": "slow.jpg", "size": 5, "etag": "a", "error": deadline},
            {"key": "rewritten.jpg", "size": 6, "etag": "b1", "error": deadline},
        ],
    )
    rows = dict(_plan(c, [known]).execute("SELECT key, previous_error FROM plan").fetchall())
    assert rows == {"slow.jpg": deadline, "rewritten.jpg": None}


def test_videos_probed_before_key_frames_were_listed_are_read_once_more(tmp_path: Path) -> None:
    """A snapshot without the key frame columns plans without error: its images carry, its readable videos re-probe."""
    c = changes(
        tmp_path,
        [
            {"key": "still.jpg", "size": 5, "etag": "a", "change": "unchanged"},
            {"key": "clip.mp4", "size": 6, "etag": "b", "change": "unchanged"},
            {"key": "broken.mp4", "size": 7, "etag": "c", "change": "unchanged"},
        ],
    )
    legacy = tmp_path / "legacy.parquet"
    schema = pa.schema([f for f in PROBES_SCHEMA if f.name not in ("keyframes", "decoded_frames", "notes")])
    rows = [
        {"key": "still.jpg", "size": 5, "etag": "a", "kind": "image"},
        {"key": "clip.mp4", "size": 6, "etag": "b", "kind": "video"},
        {"key": "broken.mp4", "size": 7, "etag": "c", "kind": "video", "error": "no moov box: not a playable MP4"},
    ]
    pq.write_table(
        pa.Table.from_pylist([{"last_modified": T0, "probed_at": T0, **r} for r in rows], schema=schema), legacy
    )
    con = _plan(c, [legacy])
    assert actions(con) == {
        "still.jpg": ("carried", "still.jpg"),
        "clip.mp4": ("probe", None),
        "broken.mp4": ("carried", "broken.mp4"),
    }
    assert con.execute("SELECT keyframes, decoded_frames, notes FROM p WHERE key = 'still.jpg'").fetchall() == [
        (None, None, None)
    ]
