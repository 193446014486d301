"""A sync's effects are published together or not at all, and nothing a killed run leaves behind wedges the next one.

- An index that cannot be written (another process holds it) fails the sync with the previous sync's index, violations
  and manifest whole; the next sync, once the index is free, ends as if the failed one had never run (moves included).
- A run killed between its index commit and the end of publishing is finished by the next sync; a run killed before
  its commit leaves nothing published.
- Temporary files of killed runs are cleaned by the next sync of the connection.
- A run killed with SIGKILL while it holds the `duckdb_index` pool slot does not block later syncs of any connection.
- Paths with an apostrophe (BUCKET_SYNC_HOME, the catalog's folder, a local root) are never spliced into SQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from assets.publish import recover
from assets.snapshots import SnapshotKeys
from demo import synth
from pipelines.instance import DAGSTER_YAML
from pipelines.runner import run_sync
from tests.conftest import REPO, Workspace
from tests.integration.buckets import LocalTestBucket

pytestmark = pytest.mark.integration

HOLD_INDEX = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""

SYNC_SCRIPT = """
import sys
from pipelines.instance import local_instance
from pipelines.runner import run_sync
outcome = run_sync(sys.argv[1], local_instance(), log_level="ERROR")
sys.exit(0 if outcome.ok else 1)
"""


@contextmanager
def index_held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the index open read-write (as a notebook or a stray sync would) until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_INDEX, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


def first_dataset(bucket: LocalTestBucket) -> None:
    bucket.put("keep.jpg", synth.jpeg(64, 48))
    bucket.put("old/place.jpg", synth.jpeg(80, 60))
    bucket.put("doomed.jpg", synth.jpeg(32, 32))
    bucket.put("upright.png", synth.png(20, 10))


def change_everything(bucket: LocalTestBucket) -> None:
    """A move, a deletion, a new violation and a new accepted image: every kind of change a sync publishes."""
    bucket.move("old/place.jpg", "new/place.jpg")
    bucket.delete("doomed.jpg")
    bucket.put("rotated.jpg", synth.jpeg(40, 30, orientation=6))
    bucket.put("fresh.jpg", synth.jpeg(50, 50))


def published(ws: Workspace, name: str) -> dict[str, object]:
    """Everything people and tools read after a sync."""
    return {
        "objects": ws.query(
            "SELECT key, deleted, moved_to, moved_from, accepted FROM objects WHERE connection = $c ORDER BY key",
            {"c": name},
        ),
        "violations": ws.query("SELECT key, rule FROM violations WHERE connection = $c ORDER BY key", {"c": name}),
        "syncs": ws.query("SELECT count(*) FROM syncs WHERE connection = $c", {"c": name}),
        "manifest": ws.manifest(name),
    }


def test_a_failed_index_commit_publishes_nothing_and_the_next_sync_loses_nothing(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    first_dataset(bucket)
    workspace.write_catalog(bucket.entry("held"))
    assert run_sync("held", dagster_instance, log_level="ERROR").ok
    before = published(workspace, "held")

    change_everything(bucket)
    with index_held(workspace.home / "index.duckdb"):
        outcome = run_sync("held", dagster_instance, log_level="CRITICAL", index_wait_s=1.0)
    assert not outcome.ok
    assert any("lock" in failure.lower() for failure in outcome.failures), outcome.failures
    assert published(workspace, "held") == before  # index, violations and manifest: all of the last good sync

    assert run_sync("held", dagster_instance, log_level="ERROR").ok
    after = published(workspace, "held")
    objects = {row[0]: row[1:] for row in after["objects"]}  # type: ignore[union-attr]
    assert objects["old/place.jpg"][:2] == (True, "new/place.jpg")  # the move survived the failed sync
    assert objects["new/place.jpg"][2] == "old/place.jpg"
    assert objects["doomed.jpg"][0] is True
    assert ("rotated.jpg", "exif_orientation") in after["violations"]  # type: ignore[operator]
    manifest = after["manifest"]
    assert '"name":"fresh"' in manifest and '"name":"new/place"' in manifest and "old/place" not in manifest
    assert after["syncs"] == [(2,)]
    assert not [k for k in workspace.state_store.list("snapshots/held/") if SnapshotKeys("held").staged_run(k)]


def test_publishing_cut_short_is_finished_by_the_next_sync_and_unindexed_runs_are_discarded(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    first_dataset(bucket)
    workspace.write_catalog(bucket.entry("cut"))
    outcome = run_sync("cut", dagster_instance, log_level="ERROR")
    assert outcome.ok
    store, keys = workspace.state_store, SnapshotKeys("cut")
    good = workspace.manifest("cut")

    # The state a SIGKILL between the index commit and the manifest's move leaves: committed, staged, unpublished.
    store.write_bytes(keys.staged_manifest(outcome.result.run_id), good.encode())
    store.write_bytes(keys.manifest, b"stale\n")
    # And a run killed before its commit: staged only.
    store.write_bytes(keys.staged_manifest("never-indexed"), b"half\n")
    notes: list[str] = []
    recover(store, workspace.index, "cut", notes.append)
    assert workspace.manifest("cut") == good
    assert [k for k in store.list(keys.prefix) if keys.staged_run(k)] == []
    assert len(notes) == 1 and outcome.result.run_id in notes[0]


def test_temporary_files_of_killed_runs_are_removed_by_the_next_sync(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    bucket = LocalTestBucket(tmp_path / "bucket")
    first_dataset(bucket)
    workspace.write_catalog(bucket.entry("tidy"))
    assert run_sync("tidy", dagster_instance, log_level="ERROR").ok
    snapshots = workspace.home / "snapshots" / "tidy"
    litter = [
        snapshots / ".probes.parquet.k1ll3d.tmp",
        snapshots / "checkpoint" / ".part-00000000000000000001.parquet.abc.tmp",
        workspace.home / "manifests" / "tidy" / ".manifest.jsonl.xyz.tmp",
        workspace.home / "scratch" / "tidy@probes-k1ll3d" / "known" / "previous.parquet",
    ]
    for path in litter:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a SIGKILL")
    assert run_sync("tidy", dagster_instance, log_level="ERROR").ok
    assert [p for p in litter if p.exists()] == []
    assert workspace.state_store.exists(SnapshotKeys("tidy").probes)


def claimed_runs(instance: DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info("duckdb_index")
    return {slot.run_id for slot in info.claimed_slots if slot.run_id}


def test_a_run_killed_inside_the_index_pool_does_not_wedge_later_syncs(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dagster_home = tmp_path / "dagster-home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    first, second = LocalTestBucket(tmp_path / "first"), LocalTestBucket(tmp_path / "second")
    first_dataset(first)
    first_dataset(second)
    workspace.write_catalog(first.entry("victim"), second.entry("bystander"))
    instance = DagsterInstance.get()
    index = workspace.home / "index.duckdb"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    with index_held(index):
        # The sync reaches media_index, claims the pool's one slot, and waits there for the index lock.
        victim = subprocess.Popen([sys.executable, "-c", SYNC_SCRIPT, "victim"], cwd=REPO, env=env)
        try:
            deadline = time.monotonic() + 240
            while not claimed_runs(instance):
                assert victim.poll() is None, "the sync ended before it reached the index pool"
                assert time.monotonic() < deadline, "the sync never claimed the duckdb_index slot"
                time.sleep(0.5)
            (killed_run,) = claimed_runs(instance)
        finally:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)

    # Another connection's sync must get the slot: run it in a thread so a wedge fails the test instead of hanging.
    result: dict[str, bool] = {}
    thread = threading.Thread(
        target=lambda: result.update(ok=run_sync("bystander", instance, log_level="ERROR").ok), daemon=True
    )
    thread.start()
    thread.join(timeout=240)
    assert not thread.is_alive(), "the next sync is blocked by the killed run's pool slot"
    assert result == {"ok": True}
    assert instance.get_run_by_id(killed_run).status == DagsterRunStatus.FAILURE
    assert killed_run not in claimed_runs(instance)
    # And the killed connection itself syncs again.
    assert run_sync("victim", instance, log_level="ERROR").ok


def test_paths_with_an_apostrophe_are_never_spliced_into_sql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_instance: DagsterInstance
) -> None:
    quoted = tmp_path / "it's here"
    home, catalog = quoted / "home'", quoted / "connections.yaml"
    monkeypatch.setenv("BUCKET_SYNC_HOME", str(home))
    monkeypatch.setenv("BUCKET_SYNC_CATALOG", str(catalog))
    ws = Workspace(home=home, catalog=catalog)
    bucket = LocalTestBucket(quoted / "o'brien's bucket")
    first_dataset(bucket)
    bucket.put("it's a photo.jpg", synth.jpeg(30, 20))
    quoted.mkdir(parents=True, exist_ok=True)
    ws.write_catalog(bucket.entry("quotes"))
    outcome = run_sync("quotes", dagster_instance, log_level="ERROR")
    assert outcome.ok, outcome.failures
    change_everything(bucket)
    outcome = run_sync("quotes", dagster_instance, log_level="ERROR")
    assert outcome.ok, outcome.failures
    keys = {k for (k,) in ws.query("SELECT key FROM objects WHERE connection = 'quotes' AND NOT deleted")}
    assert "it's a photo.jpg" in keys and "new/place.jpg" in keys
    assert '"name":"it\'s a photo"' in ws.manifest("quotes")
