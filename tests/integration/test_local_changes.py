"""Changes on a local root that a listing could miss or misread, through the whole sync.

- An in-place rewrite that keeps the size, the inode and the modification time (to the nanosecond) is still a new
  version: the change time goes with the listing, and the sync re-probes it.
- A folder that cannot be read is not a folder of deleted files: its objects keep their last known state, and the
  `listing_gaps` check says which folder could not be read. (The provider's own test makes a folder really unreadable
  for root by dropping privileges; here the sync runs in this process, so the walk's scandir is made to fail for that
  one folder, and everything else is real.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, DagsterInstance

from demo import synth
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.integration.buckets import LocalTestBucket

pytestmark = pytest.mark.integration


def orientation_offset(data: bytes) -> int:
    """Where the EXIF orientation value of a synth JPEG sits (big- or little-endian TIFF header)."""
    for tag in (b"\x01\x12\x00\x03", b"\x12\x01\x03\x00"):
        at = data.find(tag)
        if at >= 0:
            return at + 8
    raise AssertionError("no orientation tag")


def test_an_in_place_rewrite_that_restores_the_mtime_is_re_probed(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    data = synth.jpeg(64, 48, orientation=6)
    bucket.put("photo.jpg", data)
    workspace.write_catalog(bucket.entry("inplace"))
    assert run_sync("inplace", dagster_instance, log_level="ERROR").ok
    assert workspace.query("SELECT orientation FROM media WHERE connection = 'inplace'") == [(6,)]

    path = tmp_path / "bucket" / "photo.jpg"
    before = path.stat()
    at = orientation_offset(data)
    with path.open("r+b") as f:  # what `exiftool -n -Orientation=1` with mtime preserved amounts to
        f.seek(at)
        f.write(b"\x00\x01" if data[at : at + 2] == b"\x00\x06" else b"\x01\x00")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)

    assert run_sync("inplace", dagster_instance, log_level="ERROR").ok
    assert workspace.query("SELECT orientation FROM media WHERE connection = 'inplace'") == [(1,)]
    assert workspace.query(
        "SELECT changed, probed FROM syncs WHERE connection = 'inplace' ORDER BY finished_at DESC LIMIT 1"
    ) == [(1, 1)]


def test_an_unreadable_folder_keeps_its_objects_and_is_reported(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    bucket.put("top.jpg", synth.jpeg(40, 30))
    bucket.put("locked/a.jpg", synth.jpeg(41, 30))
    bucket.put("locked/deeper/b.jpg", synth.jpeg(42, 30))
    workspace.write_catalog(bucket.entry("gappy"))
    assert run_sync("gappy", dagster_instance, log_level="ERROR").ok
    manifest_before = workspace.manifest("gappy")

    locked = str(tmp_path / "bucket" / "locked")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if isinstance(path, str | os.PathLike) and os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    bucket.put("new.jpg", synth.jpeg(43, 30))
    outcome = run_sync("gappy", dagster_instance, log_level="CRITICAL")
    assert outcome.ok, outcome.failures

    live = {k for (k,) in workspace.query("SELECT key FROM objects WHERE connection = 'gappy' AND NOT deleted")}
    assert live == {"top.jpg", "new.jpg", "locked/a.jpg", "locked/deeper/b.jpg"}
    assert workspace.query("SELECT deleted FROM syncs WHERE connection = 'gappy' ORDER BY finished_at") == [(0,), (0,)]
    manifest = workspace.manifest("gappy")
    assert '"name":"locked/a"' in manifest and '"name":"new"' in manifest
    assert set(manifest_before.splitlines()) <= set(manifest.splitlines())
    gaps = {e.check_name: e for e in outcome.result.get_asset_check_evaluations()}["listing_gaps"]
    assert not gaps.passed and gaps.severity == AssetCheckSeverity.WARN
    assert "locked/" in (gaps.description or "") and "2 object(s)" in (gaps.description or "")

    monkeypatch.setattr(os, "scandir", real_scandir)
    again = run_sync("gappy", dagster_instance, log_level="ERROR")
    assert again.ok
    gaps = {e.check_name: e for e in again.result.get_asset_check_evaluations()}["listing_gaps"]
    assert gaps.passed
