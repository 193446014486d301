"""Each accepted video gets a CVAT video manifest in the state store, next to the image manifest, through a real sync.

The key frames are learned by media_probes from each video's moov box and reach cvat_manifest only through the probes
snapshot in the state store; they are compared with what CVAT records by decoding the video (tests/video_files.py).
A re-sync carries an unchanged video's key frames forward without reading it, and a deleted video's manifest goes.
The S3 test reads the videos through moto's server with ranged GETs (the moov of one at the end of the file) and keeps
the state on moto too, each sync on a fresh local home.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance

from assets.snapshots import SnapshotKeys
from demo import synth
from media.cvat import video_manifest_lines
from pipelines.runner import run_sync
from resources.index_resource import MediaIndex
from resources.state import StateStore, _remote_store
from tests.conftest import Workspace
from tests.integration.buckets import LocalTestBucket, S3TestBucket, unique_name
from tests.servers import Server
from tests.video_files import CENC_OPTIONS, cvat_reference, encode

pytestmark = pytest.mark.integration


def expected_manifest(name: str, data: bytes) -> str:
    reference = cvat_reference(data)
    keyframes = [{"number": number, "pts": pts} for number, pts in reference.keyframes]
    width, height = reference.resolution
    return "".join(line + "\n" for line in video_manifest_lines(name, width, height, reference.length, keyframes))


def published(workspace: Workspace, connection: str) -> dict[str, str]:
    """Every published video manifest of `connection`: state key relative to its folder -> text."""
    store, keys = workspace.state_store, SnapshotKeys(connection)
    return {
        key.removeprefix(keys.video_manifest_prefix): (store.read_bytes(key) or b"").decode()
        for key in store.list(keys.video_manifest_prefix)
    }


def test_accepted_videos_get_manifests_that_follow_the_bucket(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    videos = {
        "clips/bframes.mp4": encode(bframes=2, gop=5, frames=12),  # B-frames with ffmpeg's edit list, moov last
        "clips/faststart.mp4": encode(bframes=3, gop=7, frames=30, moov_last=False),
        "clips/part2.mp4": encode(codec="mpeg4", bframes=2, gop=6, frames=14),
    }
    for key, data in videos.items():
        bucket.put(key, data)
    bucket.put("clips/fragmented.mp4", encode(frames=12, movflags="frag_keyframe+empty_moov"))
    bucket.put("clips/locked.mp4", encode(frames=6, bframes=0, moov_last=False, options=CENC_OPTIONS))
    bucket.put("stills/photo.jpg", synth.jpeg(64, 48))
    workspace.write_catalog(bucket.entry("films", profile="cvat"))

    outcome = run_sync("films", dagster_instance, log_level="ERROR")
    assert outcome.ok
    manifests = published(workspace, "films")
    assert sorted(manifests) == ["clips/bframes.mp4.jsonl", "clips/faststart.mp4.jsonl", "clips/part2.mp4.jsonl"]
    for key, data in videos.items():
        assert manifests[f"{key}.jsonl"] == expected_manifest(key.rsplit("/", 1)[-1], data)
    # The image manifest is where it was, with the image alone.
    assert [json.loads(line)["name"] for line in workspace.manifest("films").splitlines()[2:]] == ["stills/photo"]
    # The fragmented video is accepted without a manifest, and says why; the encrypted one is rejected, with the reason.
    rows = dict(workspace.query("SELECT key, error FROM media WHERE connection = 'films' AND kind = 'video'"))
    assert rows["clips/fragmented.mp4"] is None
    assert rows["clips/locked.mp4"].startswith("encrypted video: track 1 is protected with scheme 'cenc'")
    staged = [k for k in workspace.state_store.list(SnapshotKeys("films").prefix) if k.endswith(".jsonl")]
    assert staged == []  # nothing left staged once the sync is published

    # Unchanged videos keep their manifests without being read again; a deleted video's manifest goes with it.
    bucket.delete("clips/part2.mp4")
    assert run_sync("films", dagster_instance, log_level="ERROR").ok
    assert workspace.query(
        "SELECT probed, carried FROM syncs WHERE connection = 'films' ORDER BY finished_at DESC LIMIT 1"
    ) == [(0, 5)]
    again = published(workspace, "films")
    assert sorted(again) == ["clips/bframes.mp4.jsonl", "clips/faststart.mp4.jsonl"]
    assert again["clips/bframes.mp4.jsonl"] == manifests["clips/bframes.mp4.jsonl"]


def test_video_manifests_with_bucket_and_state_on_s3(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    moto_server: Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Videos read by range from S3, state on S3, and each sync on a fresh local home: the key frames of an unchanged
    video reach the next sync's manifest step through the probes snapshot on S3 alone."""
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    state = S3TestBucket(moto_server.endpoint, monkeypatch)
    for variable, value in {
        "AWS_ACCESS_KEY_ID": S3TestBucket.KEY,
        "AWS_SECRET_ACCESS_KEY": S3TestBucket.SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "BUCKET_SYNC_STATE": f"s3://{state.bucket}/state",
        "BUCKET_SYNC_INDEX": str(tmp_path / "index.duckdb"),
    }.items():
        monkeypatch.setenv(variable, value)
    _remote_store.cache_clear()
    long = encode(bframes=3, gop=25, frames=250, width=320, height=240)  # about 2 MB, moov at the end
    assert long.index(b"moov") > 1024 * 1024
    bucket.put("raw/long.mp4", long)
    name = unique_name("videos")
    workspace.write_catalog(bucket.entry(name, profile="cvat", prefix="raw"))
    store, keys = StateStore(url=f"s3://{state.bucket}/state"), SnapshotKeys(name)

    def sync_on_a_fresh_machine(run: int) -> None:
        monkeypatch.setenv("BUCKET_SYNC_HOME", str(tmp_path / f"home-{run}"))
        assert run_sync(name, dagster_instance, log_level="ERROR").ok
        assert [p for p in (tmp_path / f"home-{run}").rglob("*") if p.is_file()] == []

    try:
        sync_on_a_fresh_machine(1)
        short = encode(bframes=2, gop=5, frames=12, moov_last=False)
        bucket.put("raw/short.mp4", short)
        sync_on_a_fresh_machine(2)
        manifests = {
            key.removeprefix(keys.video_manifest_prefix): (store.read_bytes(key) or b"").decode()
            for key in store.list(keys.video_manifest_prefix)
        }
        assert manifests == {
            "long.mp4.jsonl": expected_manifest("long.mp4", long),
            "short.mp4.jsonl": expected_manifest("short.mp4", short),
        }
        with MediaIndex(url=str(tmp_path / "index.duckdb")).connect(read_only=True) as con:
            history = con.execute("SELECT probed, carried FROM syncs ORDER BY finished_at").fetchall()
            ((read, requests),) = con.execute(
                "SELECT bytes_read, requests FROM media WHERE key = 'raw/long.mp4'"
            ).fetchall()
        assert history == [(1, 0), (1, 1)]  # the long video was read once, by the first sync
        assert requests <= 3 and read < len(long) / 10
    finally:
        _remote_store.cache_clear()
