"""The state store on a local folder and on S3 (moto): the same calls, each object whole, nothing left behind.

And a whole sync whose state lives on S3, run twice, each time with a fresh, empty BUCKET_SYNC_HOME: the second sync
finds everything it needs (baseline, facts) in the store, reads no object again, and publishes the manifest there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from assets.snapshots import SnapshotKeys
from demo import synth
from pipelines.runner import run_sync
from resources.state import StateStore, StateStoreError, _remote_store
from tests.conftest import Workspace
from tests.integration.buckets import LocalTestBucket, S3TestBucket
from tests.servers import Server

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_state(moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty bucket on moto as the state store, with credentials in the standard AWS variables."""
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3TestBucket.KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3TestBucket.SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    _remote_store.cache_clear()
    yield f"s3://{bucket.bucket}/state"
    _remote_store.cache_clear()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "local":
        return StateStore(url=str(tmp_path / "state"), scratch=str(tmp_path / "scratch"))
    return StateStore(url=request.getfixturevalue("s3_state"), scratch=str(tmp_path / "scratch"))


def test_objects_round_trip_whole(store: StateStore, tmp_path: Path) -> None:
    assert not store.exists("snapshots/a/listing.parquet")
    assert store.read_bytes("snapshots/a/state.json") is None
    with store.scratch_dir("a", "test") as scratch:
        source = scratch / "listing.parquet"
        source.write_bytes(b"PAR1 listing")
        store.put("snapshots/a/listing.parquet", source)
        assert store.exists("snapshots/a/listing.parquet")
        copy = scratch / "copy.parquet"
        assert store.fetch("snapshots/a/listing.parquet", copy) and copy.read_bytes() == b"PAR1 listing"
        assert not store.fetch("snapshots/a/missing.parquet", scratch / "missing.parquet")
        # A fetched copy is a snapshot: replacing the object later does not change it.
        store.write_bytes("snapshots/a/listing.parquet", b"PAR1 newer")
        assert copy.read_bytes() == b"PAR1 listing"
    assert not list((tmp_path / "scratch").iterdir()), "scratch folders are removed after the step"
    store.write_bytes("snapshots/a/checkpoint/part-1.parquet", b"1")
    store.write_bytes("snapshots/a/checkpoint/part-2.parquet", b"2")
    assert store.list("snapshots/a/checkpoint/") == [
        "snapshots/a/checkpoint/part-1.parquet",
        "snapshots/a/checkpoint/part-2.parquet",
    ]
    store.move("snapshots/a/checkpoint/part-1.parquet", "manifests/a/manifest.jsonl")
    assert store.read_bytes("manifests/a/manifest.jsonl") == b"1"
    assert not store.exists("snapshots/a/checkpoint/part-1.parquet")
    store.delete("snapshots/a/checkpoint/part-2.parquet")
    store.delete("snapshots/a/checkpoint/never-there.parquet")
    assert store.list("snapshots/a/checkpoint/") == []


def test_credentials_in_the_state_url_are_refused_and_never_echoed() -> None:
    store = StateStore(url="s3://AKIAEXAMPLE:hunter2secret@bucket/state")
    with pytest.raises(StateStoreError, match="BUCKET_SYNC_STATE holds credentials") as caught:
        store.exists("x")
    assert "hunter2secret" not in str(caught.value)


def test_a_sync_with_its_state_on_s3_needs_nothing_from_the_local_disk(
    s3_state: str,
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    for i in range(6):
        bucket.put(f"img-{i}.jpg", synth.jpeg(30 + i, 20, orientation=1 + i % 3))
    workspace.write_catalog(bucket.entry("remote"))
    monkeypatch.setenv("BUCKET_SYNC_STATE", s3_state)
    monkeypatch.setenv("BUCKET_SYNC_INDEX", str(tmp_path / "index" / "index.duckdb"))

    def sync_on_a_fresh_machine(run: int) -> None:
        monkeypatch.setenv("BUCKET_SYNC_HOME", str(tmp_path / f"scratch-{run}"))
        assert run_sync("remote", dagster_instance, log_level="ERROR").ok
        left = [p for p in (tmp_path / f"scratch-{run}").rglob("*") if p.is_file()]
        assert left == [], f"a sync left local files behind: {left}"

    sync_on_a_fresh_machine(1)
    bucket.put("img-new.jpg", synth.jpeg(50, 20))
    sync_on_a_fresh_machine(2)

    store = StateStore(url=s3_state)
    manifest = (store.read_bytes(SnapshotKeys("remote").manifest) or b"").decode()
    assert '"name":"img-new"' in manifest and '"name":"img-0"' in manifest
    index = Workspace(home=tmp_path / "index", catalog=workspace.catalog).index
    with index.connect(read_only=True) as con:
        history = con.execute("SELECT new, unchanged, probed FROM syncs ORDER BY finished_at").fetchall()
    assert history == [(6, 0, 6), (1, 6, 1)]  # the second machine re-read only the new object
    keys = set(store.list("snapshots/remote/"))
    assert {SnapshotKeys("remote").baseline, SnapshotKeys("remote").probes} <= keys
