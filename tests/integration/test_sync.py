"""The whole sync, through Dagster, on every provider: listing, probes, checks, manifest and index.

Each object's expected facts come from how the test made it (synth parameters), not from a previous run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckSeverity, DagsterInstance

from demo import synth
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.integration.buckets import BucketUnderTest, LocalTestBucket, unique_name

pytestmark = pytest.mark.integration

PREFIX = "data/"


@dataclass
class Made:
    data: bytes
    facts: dict[str, Any]
    rules: set[str] = field(default_factory=set)
    manifest: tuple[int, int] | None = None  # (width, height) when the image belongs in the manifest


def dataset() -> dict[str, Made]:
    """Keys relative to PREFIX, each with the facts and rule violations it was made to have."""
    big_exif = synth.jpeg(2400, 1800, orientation=1, exif_extra_bytes=30_000)
    return {
        "upright.jpg": Made(
            synth.jpeg(640, 480, orientation=1), {"format": "jpeg", "width": 640, "orientation": 1}, set(), (640, 480)
        ),
        "camera/big-exif.jpg": Made(big_exif, {"format": "jpeg", "width": 2400, "height": 1800}, set(), (2400, 1800)),
        "no-exif.jpg": Made(synth.jpeg(320, 200, orientation=None), {"orientation": None}, set(), (320, 200)),
        "rotated-3.jpg": Made(synth.jpeg(400, 300, orientation=3), {"orientation": 3}, {"exif_orientation"}),
        "rotated-6.jpg": Made(
            synth.jpeg(400, 300, orientation=6),
            {"orientation": 6, "display_width": 300, "display_height": 400},
            {"exif_orientation"},
        ),
        "nested/deep/diagram.png": Made(synth.png(200, 100), {"format": "png", "height": 100}, set(), (200, 100)),
        "web/photo.webp": Made(synth.webp(300, 200, orientation=1), {"format": "webp"}, set(), (300, 200)),
        "broken/half.jpg": Made(synth.truncated(synth.jpeg(640, 480), 0.5), {"format": "jpeg"}, {"readable"}),
        "broken/notes.jpg": Made(b"these are notes, not a picture\n", {"kind": "other"}, {"readable"}),
        "clips/compliant.mp4": Made(
            synth.mp4(brand="mp42", pix_fmt="yuv420p"),
            {"kind": "video", "major_brand": "mp42", "pix_fmt": "yuv420p", "codec": "avc1", "frames": 10},
        ),
        "clips/isom.mp4": Made(synth.mp4(brand="isom"), {"major_brand": "isom"}, {"mp4_brand"}),
        "clips/yuv444.mp4": Made(synth.mp4(pix_fmt="yuv444p"), {"pix_fmt": "yuv444p"}, {"mp4_pixel_format"}),
        "clips/moov-last.mp4": Made(
            synth.mp4(moov_last=True, frames=60), {"major_brand": "mp42", "pix_fmt": "yuv420p", "frames": 60}
        ),
    }


def upload(bucket: BucketUnderTest, made: dict[str, Made]) -> None:
    for key, item in made.items():
        bucket.put(PREFIX + key, item.data)
    bucket.put("elsewhere/outside-prefix.jpg", synth.jpeg(64, 64))
    bucket.folder_marker(PREFIX + "empty-folder/")


def synced_dataset(bucket: BucketUnderTest, ws: Workspace, instance: DagsterInstance) -> tuple[dict[str, Made], str]:
    """Upload the dataset to a fresh connection on `bucket` and sync it once."""
    made = dataset()
    upload(bucket, made)
    name = unique_name(bucket.provider)
    ws.write_catalog(bucket.entry(name, prefix=PREFIX))
    assert run_sync(name, instance, log_level="WARNING").ok
    return made, name


def last_sync(ws: Workspace, name: str, columns: str) -> tuple[Any, ...]:
    """The chosen columns of the connection's most recent `syncs` row."""
    return ws.query(
        f"SELECT {columns} FROM syncs WHERE connection = $c ORDER BY finished_at DESC LIMIT 1", {"c": name}
    )[0]


def media_rows(ws: Workspace, name: str) -> dict[str, dict[str, Any]]:
    with ws.index.connect(read_only=True) as con:
        cur = con.execute("SELECT * FROM media WHERE connection = $c", {"c": name})
        cols = [d[0] for d in cur.description]
        return {row[1]: dict(zip(cols, row, strict=True)) for row in cur.fetchall()}


def test_full_sync_lists_probes_judges_and_indexes(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    made = dataset()
    upload(test_bucket, made)
    name = unique_name(test_bucket.provider)
    workspace.write_catalog(test_bucket.entry(name, prefix=PREFIX, profile="strict"))

    outcome = run_sync(name, dagster_instance, log_level="WARNING")
    assert outcome.ok, outcome.failures

    # Listing: exactly the objects under the prefix; the folder marker and the outside key are not media.
    (listed, new, probed) = workspace.query("SELECT listed, new, probed FROM syncs WHERE connection = $c", {"c": name})[
        0
    ]
    assert (listed, new, probed) == (len(made), len(made), len(made))
    keys = {k for (k,) in workspace.query("SELECT key FROM objects WHERE connection = $c", {"c": name})}
    assert keys == {PREFIX + k for k in made}

    # Facts: each object has the facts it was made with, and nothing was read whole.
    rows = media_rows(workspace, name)
    for key, item in made.items():
        row = rows[PREFIX + key]
        for fact, expected in item.facts.items():
            assert row[fact] == expected, f"{key}: {fact} = {row[fact]!r}, expected {expected!r}"
        if len(item.data) > 64 * 1024:
            assert row["bytes_read"] < len(item.data), f"{key} was read whole"
    big = rows[PREFIX + "camera/big-exif.jpg"]
    assert big["bytes_read"] <= 64 * 1024 + 64 and big["requests"] <= 3

    # Violations: exactly the rule breaks each object was made with.
    found = set(workspace.query("SELECT key, rule FROM violations WHERE connection = $c", {"c": name}))
    assert found == {(PREFIX + k, rule) for k, item in made.items() for rule in item.rules}
    assert {s for (s,) in workspace.query("SELECT DISTINCT severity FROM violations")} == {"WARN"}
    remediation = workspace.query(
        "SELECT remediation FROM violations WHERE rule = 'exif_orientation' AND key LIKE '%rotated-6.jpg'"
    )[0][0]
    assert "mogrify -auto-orient" in remediation

    # Checks: one evaluation per rule, WARN, failing exactly for the rules broken, with the count.
    evaluations = {e.check_name: e for e in outcome.result.get_asset_check_evaluations()}
    broken = {rule for item in made.values() for rule in item.rules}
    for rule in ("readable", "supported_format", "exif_orientation", "mp4_brand", "mp4_pixel_format"):
        evaluation = evaluations[rule]
        assert evaluation.passed == (rule not in broken), rule
        assert evaluation.severity == AssetCheckSeverity.WARN
        expected_count = sum(rule in item.rules for item in made.values())
        assert evaluation.metadata["count"].value == expected_count
    assert evaluations["listing_collapse"].passed

    # Manifest: CVAT 1.1, exactly the accepted images, sorted by key, names relative to the prefix, no extension.
    lines = workspace.manifest(name).splitlines()
    assert [json.loads(x) for x in lines[:2]] == [{"version": "1.1"}, {"type": "images"}]
    expected = sorted((k, item.manifest) for k, item in made.items() if item.manifest)
    got = [json.loads(x) for x in lines[2:]]
    assert [(g["name"] + g["extension"], (g["width"], g["height"])) for g in got] == expected
    assert all(" " not in x for x in lines), "manifest lines are compact JSON"


def test_unchanged_resync_reads_nothing(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    made, name = synced_dataset(test_bucket, workspace, dagster_instance)
    assert run_sync(name, dagster_instance, log_level="WARNING").ok
    second = last_sync(workspace, name, "unchanged, probed, carried, requests, bytes_read")
    assert second == (len(made), 0, len(made), 0, 0)
    assert run_sync(name, dagster_instance, full=True, log_level="WARNING").ok
    third = last_sync(workspace, name, "probed, full_resync")
    assert third == (len(made), True)


def test_add_overwrite_delete_and_move_are_tracked(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    made, name = synced_dataset(test_bucket, workspace, dagster_instance)

    test_bucket.put(PREFIX + "added.png", synth.png(50, 40))
    test_bucket.put(PREFIX + "upright.jpg", synth.jpeg(800, 600, orientation=1))  # new content, same key
    test_bucket.delete(PREFIX + "no-exif.jpg")
    moved_from, moved_to = PREFIX + "rotated-6.jpg", PREFIX + "renamed/rotated-6.jpg"
    if hasattr(test_bucket, "move"):
        test_bucket.move(moved_from, moved_to)
    else:
        test_bucket.put(moved_to, made["rotated-6.jpg"].data)
        test_bucket.delete(moved_from)

    assert run_sync(name, dagster_instance, log_level="WARNING").ok
    row = last_sync(workspace, name, "listed, new, changed, unchanged, deleted, moved, probed, carried")
    n = len(made)
    # listed: n - 1 deleted + 1 added (the move keeps the count); probed: the added and the overwritten objects.
    assert row == (n, 1, 1, n - 3, 1, 1, 2, n - 2)
    tomb = workspace.query(
        "SELECT deleted, deleted_at IS NOT NULL, moved_to FROM objects WHERE connection = $c AND key = $k",
        {"c": name, "k": PREFIX + "no-exif.jpg"},
    )[0]
    assert tomb == (True, True, None)
    moved = workspace.query(
        "SELECT key, deleted, moved_to, moved_from FROM objects WHERE connection = $c AND key IN ($a, $b) ORDER BY key",
        {"c": name, "a": moved_from, "b": moved_to},
    )
    assert sorted(moved) == sorted([(moved_from, True, moved_to, None), (moved_to, False, None, moved_from)])
    assert workspace.query(
        "SELECT width FROM media WHERE connection = $c AND key = $k", {"c": name, "k": PREFIX + "upright.jpg"}
    ) == [(800,)]
    # The moved image keeps its facts and its violation under the new key; the deleted one leaves the manifest.
    assert workspace.query(
        "SELECT orientation FROM media WHERE connection = $c AND key = $k", {"c": name, "k": moved_to}
    ) == [(6,)]
    violations = {k for (k,) in workspace.query("SELECT key FROM violations WHERE connection = $c", {"c": name})}
    assert moved_to in violations and moved_from not in violations
    manifest = workspace.manifest(name)
    assert '"name":"no-exif"' not in manifest and '"name":"added"' in manifest


def test_collapsed_listing_is_blocked_until_allowed(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    made, name = synced_dataset(test_bucket, workspace, dagster_instance)
    manifest_before = workspace.manifest(name)

    survivors = ["upright.jpg", "clips/compliant.mp4"]
    for key in made:
        if key not in survivors:
            test_bucket.delete(PREFIX + key)

    blocked = run_sync(name, dagster_instance, log_level="WARNING")
    assert blocked.blocked_by is not None and "allow_collapse" in blocked.blocked_by
    # Nothing downstream ran: no tombstones, the manifest is untouched, one sync on record.
    assert workspace.query("SELECT count(*) FROM objects WHERE connection = $c AND deleted", {"c": name}) == [(0,)]
    assert workspace.manifest(name) == manifest_before
    assert workspace.query("SELECT count(*) FROM syncs WHERE connection = $c", {"c": name}) == [(1,)]

    allowed = run_sync(name, dagster_instance, allow_collapse=True, log_level="WARNING")
    assert allowed.ok
    deleted = workspace.query("SELECT count(*) FROM objects WHERE connection = $c AND deleted", {"c": name})
    assert deleted == [(len(made) - len(survivors),)]


def test_move_without_a_content_hash_is_recognised_by_the_bytes_already_read(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    """On a folder, copy-then-delete gives the file a new inode, so its etag changes: only the head hash pairs it."""
    bucket = LocalTestBucket(tmp_path / "bucket")
    photo, other = synth.jpeg(900, 600, orientation=6), synth.jpeg(900, 600, orientation=1)
    bucket.put("old/photo.jpg", photo)
    bucket.put("keep.jpg", other)
    workspace.write_catalog(bucket.entry("copies"))
    assert run_sync("copies", dagster_instance, log_level="WARNING").ok

    bucket.put("new/photo.jpg", photo)  # a copy: new inode, new etag, same bytes
    bucket.delete("old/photo.jpg")
    bucket.put("unrelated.jpg", synth.jpeg(900, 600, orientation=3))  # same size class, different bytes
    assert run_sync("copies", dagster_instance, log_level="WARNING").ok

    assert last_sync(workspace, "copies", "new, deleted, moved") == (1, 0, 1)
    assert workspace.query(
        "SELECT key, deleted, moved_to, moved_from FROM objects WHERE connection = 'copies' AND key LIKE '%photo.jpg' "
        "ORDER BY key"
    ) == [("new/photo.jpg", False, None, "old/photo.jpg"), ("old/photo.jpg", True, "new/photo.jpg", None)]
