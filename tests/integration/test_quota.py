"""Quotas through the whole sync, on the local provider and on S3 (moto): a bucket over `max_objects` is indexed up
to the quota in key order, the rest is recorded in `skipped` and reported by the `quota` check, and only the admitted
objects are read, counted at the emulator's side of the wire for S3.
"""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from dagster import AssetCheckSeverity, DagsterInstance

from assets.snapshots import BaselineState
from demo import synth
from pipelines.figures import size
from pipelines.runner import SyncOutcome, run_sync
from pipelines.summary import sync_summary
from resources.index_resource import MediaIndex
from tests.conftest import Workspace
from tests.integration.buckets import BucketUnderTest, LocalTestBucket, unique_name
from tests.proxy import FaultProxy, route_through
from tests.servers import Server, create_database

pytestmark = pytest.mark.integration

PREFIX = "quota/"
N, K = 7, 4


def check(outcome: SyncOutcome, name: str) -> Any:
    """The run's evaluation of check `name`."""
    return next(e for e in outcome.result.get_asset_check_evaluations() if e.check_name == name)


def keys_of(ws: Workspace, table: str, name: str, where: str = "true") -> list[str]:
    sql = f"SELECT key FROM {table} WHERE connection = $c AND {where} ORDER BY key"
    return [k for (k,) in ws.query(sql, {"c": name})]


@pytest.mark.parametrize("test_bucket", ["local", "s3"], indirect=True)
def test_a_sync_over_max_objects_indexes_up_to_it_and_reports_the_rest(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    made = {f"{PREFIX}{i:02d}.jpg": synth.jpeg(100 + i, 80, orientation=1) for i in range(N)}
    for key in sorted(made, reverse=True):
        test_bucket.put(key, made[key])
    keys = sorted(made)
    name = unique_name(test_bucket.provider)
    with ExitStack() as stack:
        entry = test_bucket.entry(name, prefix=PREFIX, max_objects=K)
        proxy = None
        if test_bucket.provider == "s3":  # every object read, seen from the emulator's side
            proxy = stack.enter_context(FaultProxy(test_bucket.endpoint, provider="s3"))  # type: ignore[attr-defined]
            entry = route_through(entry, proxy)
        catalog = workspace.write_catalog(entry)
        outcome = run_sync(name, dagster_instance, log_level="WARNING")
        assert outcome.ok, outcome.failures
        read_keys = {unquote(r.path).split("/", 2)[2] for r in proxy.object_reads()} if proxy is not None else None

    # The index holds exactly the first K keys in key order; the other N - K are recorded as skipped for quota.
    assert keys_of(workspace, "objects", name) == keys[:K]
    assert keys_of(workspace, "media", name) == keys[:K]
    skipped = workspace.query("SELECT key, size, reason FROM skipped WHERE connection = $c ORDER BY key", {"c": name})
    assert skipped == [(k, len(made[k]), "quota") for k in keys[K:]]
    listed, new, probed, requests = workspace.query(
        "SELECT listed, new, probed, requests FROM syncs WHERE connection = $c", {"c": name}
    )[0]
    assert (listed, new, probed) == (N, K, K)

    # Probing read the admitted objects only.
    (media_requests,) = workspace.query("SELECT sum(requests) FROM media WHERE connection = $c", {"c": name})[0]
    assert requests == media_requests > 0
    if read_keys is not None:
        assert read_keys == set(keys[:K])

    # The check fails (as a warning) with the numbers and the fix.
    evaluation = check(outcome, "quota")
    over_bytes = sum(len(made[k]) for k in keys[K:])
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.description == (
        f"{N - K} objects ({over_bytes:,} bytes) over max_objects={K} for connection '{name}': "
        f"raise `max_objects` in {catalog} or narrow `prefix`/`include`"
    )
    metadata = evaluation.metadata
    assert (metadata["over_quota"].value, metadata["over_quota_bytes"].value) == (N - K, over_bytes)
    assert (metadata["admitted"].value, metadata["max_objects"].value) == (K, K)
    assert [r.data["key"] for r in metadata["first_skipped"].value.records] == keys[K:]

    # The change sensor compares the bucket with everything listed, not with what was admitted: a bucket over its
    # quota must not look changed at every tick.
    baseline = BaselineState.load(workspace.state_store, name)
    assert baseline is not None and baseline.fingerprint[0] == N

    # The manifest holds the admitted images only; the summary names the skipped ones.
    lines = workspace.manifest(name).splitlines()[2:]
    assert [json.loads(line)["name"] for line in lines] == [k.removeprefix(PREFIX)[:-4] for k in keys[:K]]
    rendered = sync_summary(name, workspace.index, workspace.state_store).render()
    assert f"over quota     : {N - K} skipped ({size(over_bytes)})" in rendered


@pytest.mark.parametrize("test_bucket", ["local"], indirect=True)  # admission order does not depend on the provider
def test_raising_then_lowering_the_quota_admits_and_never_evicts(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    keys = [f"{PREFIX}{i:02d}.png" for i in range(N)]
    for i, key in enumerate(keys):
        test_bucket.put(key, synth.png(40 + i, 30))
    name = unique_name("local")
    entry = test_bucket.entry(name, prefix=PREFIX)
    workspace.write_catalog({**entry, "max_objects": K})
    first = run_sync(name, dagster_instance, log_level="WARNING")
    assert first.ok and not check(first, "quota").passed
    since = "SELECT key, first_skipped_at FROM skipped WHERE connection = $c"
    first_skipped_at = dict(workspace.query(since, {"c": name}))

    # A deletion frees one place: the next key in order takes it; the last one is skipped still, since its first time.
    test_bucket.delete(keys[0])
    second = run_sync(name, dagster_instance, log_level="WARNING")
    assert second.ok
    assert keys_of(workspace, "objects", name, "NOT deleted") == keys[1 : K + 1]
    assert keys_of(workspace, "skipped", name) == keys[K + 1 :]
    assert dict(workspace.query(since, {"c": name})) == {k: first_skipped_at[k] for k in keys[K + 1 :]}

    # Raising the quota admits (and probes) the skipped keys; the check passes and the skipped rows are gone.
    workspace.write_catalog({**entry, "max_objects": N})
    raised = run_sync(name, dagster_instance, log_level="WARNING")
    assert raised.ok and check(raised, "quota").passed
    assert keys_of(workspace, "objects", name, "NOT deleted") == keys[1:]
    assert keys_of(workspace, "skipped", name) == []
    assert workspace.query(
        "SELECT new, probed FROM syncs WHERE connection = $c ORDER BY finished_at DESC LIMIT 1", {"c": name}
    ) == [(N - 1 - K, N - 1 - K)]

    # Lowering it evicts nothing already indexed: a new key is skipped, the indexed ones stay live and re-synced.
    test_bucket.put(f"{PREFIX}00-new.png", synth.png(20, 20))
    workspace.write_catalog({**entry, "max_objects": 2})
    lowered = run_sync(name, dagster_instance, log_level="WARNING")
    assert lowered.ok
    assert keys_of(workspace, "objects", name, "NOT deleted") == keys[1:]
    assert keys_of(workspace, "skipped", name) == [f"{PREFIX}00-new.png"]
    evaluation = check(lowered, "quota")
    assert not evaluation.passed and evaluation.description.startswith("1 objects (")
    assert f"over max_objects=2 for connection '{name}'" in evaluation.description


def test_the_skipped_table_on_a_ducklake_index(
    postgres_server: Server,
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The same record through DuckLake (no primary keys; every write a MERGE, UPDATE or DELETE in one snapshot)."""
    monkeypatch.setenv("PGPASSWORD", postgres_server.extra["password"])
    monkeypatch.setenv(
        "BUCKET_SYNC_INDEX", "ducklake:postgres:" + create_database(postgres_server, f"quota_{uuid.uuid4().hex[:10]}")
    )
    monkeypatch.setenv("BUCKET_SYNC_INDEX_DATA", str(tmp_path / "lake-data"))
    bucket = LocalTestBucket(tmp_path / "bucket")
    keys = [f"{i:02d}.png" for i in range(5)]
    for i, key in enumerate(keys):
        bucket.put(key, synth.png(30 + i, 20))
    name = unique_name("lake")
    workspace.write_catalog(bucket.entry(name, max_objects=3))

    def query(sql: str) -> list[tuple[Any, ...]]:
        with MediaIndex().connect(read_only=True) as con:
            return con.execute(sql, {"c": name}).fetchall()

    assert run_sync(name, dagster_instance, log_level="WARNING").ok
    assert query("SELECT key, reason FROM skipped WHERE connection = $c ORDER BY key") == [
        (k, "quota") for k in keys[3:]
    ]
    assert query("SELECT count(*) FROM objects WHERE connection = $c") == [(3,)]
    assert run_sync(name, dagster_instance, log_level="WARNING").ok  # unchanged: the record stays as it is
    assert [k for (k,) in query("SELECT key FROM skipped WHERE connection = $c ORDER BY key")] == keys[3:]
    workspace.write_catalog(bucket.entry(name))  # the quota removed: everything is indexed, nothing skipped
    assert run_sync(name, dagster_instance, log_level="WARNING").ok
    assert query("SELECT count(*) FROM skipped WHERE connection = $c") == [(0,)]
    assert query("SELECT count(*) FROM objects WHERE connection = $c AND NOT deleted") == [(5,)]
