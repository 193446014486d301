"""An unchanged re-sync rewrites nothing that did not change, and still records that it ran.

What is (not) rewritten is read from the state store's files (a local store replaces a file by a rename, so a rewrite
shows as a new inode) and from the index's rows; never from a timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from assets.snapshots import SnapshotKeys
from demo import synth
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.integration.buckets import LocalTestBucket

pytestmark = pytest.mark.integration

NAME = "quiet"


def stored(ws: Workspace, *keys: str) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of each state-store key: a file put again has another inode."""
    root = ws.state_store.local_root
    assert root is not None
    found = {key: (root / key).stat() for key in keys}
    return {key: (st.st_ino, st.st_mtime_ns) for key, st in found.items()}


def rows(ws: Workspace, sql: str) -> list[tuple[Any, ...]]:
    return sorted(ws.query(sql, {"c": NAME}))


def test_an_unchanged_resync_rewrites_no_snapshot_manifest_or_row_but_last_seen(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    bucket.put("upright.jpg", synth.jpeg(64, 48, orientation=1))
    bucket.put("nested/rotated.jpg", synth.jpeg(64, 48, orientation=6))
    bucket.put("notes.jpg", b"not a picture")
    workspace.write_catalog(bucket.entry(NAME))
    keys = SnapshotKeys(NAME)
    unchanged = (keys.probes, keys.violations, keys.moves, keys.manifest)

    assert run_sync(NAME, dagster_instance, log_level="WARNING").ok
    assert run_sync(NAME, dagster_instance, log_level="WARNING").ok  # marks every fact as carried, once
    before = stored(workspace, *unchanged)
    violations = rows(workspace, "SELECT key, rule, message, detected_at FROM violations WHERE connection = $c")
    seen = dict(rows(workspace, "SELECT key, last_seen FROM objects WHERE connection = $c"))
    first = rows(workspace, "SELECT key, first_seen FROM objects WHERE connection = $c")
    media = rows(workspace, "SELECT * FROM media WHERE connection = $c")

    outcome = run_sync(NAME, dagster_instance, log_level="WARNING")
    assert outcome.ok

    assert stored(workspace, *unchanged) == before, "an unchanged re-sync put a snapshot or the manifest again"
    assert rows(workspace, "SELECT key, rule, message, detected_at FROM violations WHERE connection = $c") == violations
    assert rows(workspace, "SELECT * FROM media WHERE connection = $c") == media
    assert rows(workspace, "SELECT key, first_seen FROM objects WHERE connection = $c") == first
    again = dict(rows(workspace, "SELECT key, last_seen FROM objects WHERE connection = $c"))
    assert again.keys() == seen.keys() and all(again[k] > seen[k] for k in seen)
    # The run is on record, and its checks still report.
    assert workspace.query("SELECT count(*), sum(probed) FROM syncs WHERE connection = $c", {"c": NAME}) == [(3, 3)]
    last = workspace.query(
        "SELECT listed, unchanged, probed, carried, violations FROM syncs WHERE connection = $c "
        "ORDER BY finished_at DESC LIMIT 1",
        {"c": NAME},
    )[0]
    assert last == (3, 3, 0, 3, 2)  # rotated.jpg breaks exif_orientation, notes.jpg readable
    evaluations = {e.check_name: e for e in outcome.result.get_asset_check_evaluations()}
    assert not evaluations["exif_orientation"].passed and evaluations["listing_collapse"].passed


def test_a_change_after_unchanged_resyncs_is_written_and_a_renamed_object_is_judged_under_its_new_name(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    bucket.put("a/rotated.jpg", synth.jpeg(64, 48, orientation=6))
    bucket.put("b/rotated.jpg", synth.jpeg(80, 48, orientation=3))
    bucket.put("keep.jpg", synth.jpeg(64, 48, orientation=1))
    workspace.write_catalog(bucket.entry(NAME))
    for _ in range(2):
        assert run_sync(NAME, dagster_instance, log_level="WARNING").ok
    manifest = workspace.manifest(NAME)

    bucket.move("a/rotated.jpg", "moved/rotated.jpg")  # same file name: same finding, its fix names the new key
    bucket.move("b/rotated.jpg", "b/renamed.jpg")  # a new file name: judged again, the fix names the new key
    assert run_sync(NAME, dagster_instance, log_level="WARNING").ok

    found = dict(
        workspace.query(
            "SELECT key, remediation FROM violations WHERE connection = $c AND rule = 'exif_orientation'", {"c": NAME}
        )
    )
    assert found.keys() == {"moved/rotated.jpg", "b/renamed.jpg"}
    assert "moved/rotated.jpg" in found["moved/rotated.jpg"] and "a/rotated" not in found["moved/rotated.jpg"]
    assert "b/renamed.jpg" in found["b/renamed.jpg"]
    assert workspace.query(
        "SELECT moved, probed, carried FROM syncs WHERE connection = $c ORDER BY finished_at DESC LIMIT 1", {"c": NAME}
    ) == [(2, 0, 3)]
    assert workspace.manifest(NAME) == manifest  # only rejected images moved: the same accepted images
