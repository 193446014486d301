"""Delta sync: a run driven by bucket events reads only the keys they name, and leaves the index as a full sync would.

On S3 the events are real: moto delivers the bucket's notifications to an SQS queue, the test drains it and parses
the bodies with the same parser the sensor uses. On every provider the same flow also runs from a batch built by hand,
with the kinds of events a queue really delivers wrongly (twice, stale, out of order, outside the prefix). Each delta
sync is compared with a full sync of the same bucket by a second connection that saw the same history.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance

from assets.snapshots import BatchedEvent, EventBatch, ListingState
from demo import synth
from pipelines.runner import run_sync
from resources.event_messages import parse_s3_message
from tests.conftest import Workspace
from tests.integration.buckets import BucketUnderTest, S3TestBucket, unique_name
from tests.proxy import FaultPlan, FaultProxy, route_through

pytestmark = pytest.mark.integration

PREFIX = "set/"

#: What the index holds of a connection, without what differs between two connections syncing one bucket (run ids,
#: times). Objects keep their tombstones and move markers, so these compare the whole history's outcome.
_OBJECTS = """
    SELECT key, size, etag, last_modified, version, content_md5, deleted, moved_to, moved_from, accepted
    FROM objects WHERE connection = $c ORDER BY key
"""
_VIOLATIONS = "SELECT key, rule, severity, message, remediation FROM violations WHERE connection = $c ORDER BY ALL"


def _media(workspace: Workspace, name: str) -> list[tuple[Any, ...]]:
    with workspace.index.connect(read_only=True) as con:
        cursor = con.execute(
            "SELECT * EXCLUDE (connection, probed_at) FROM media WHERE connection = $c ORDER BY key", {"c": name}
        )
        return cursor.fetchall()


def index_rows(workspace: Workspace, name: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "objects": workspace.query(_OBJECTS, {"c": name}),
        "media": _media(workspace, name),
        "violations": workspace.query(_VIOLATIONS, {"c": name}),
    }


def sync_kinds(workspace: Workspace, name: str) -> list[tuple[str, int]]:
    return workspace.query(
        "SELECT sync_kind, event_keys FROM syncs WHERE connection = $c ORDER BY finished_at", {"c": name}
    )


def seed(bucket: BucketUnderTest) -> None:
    """Twelve images (some EXIF-rotated, so there are violations) and a video, under the prefix."""
    for i in range(12):
        bucket.put(f"{PREFIX}{i:02d}.jpg", synth.jpeg(100 + i, 80, orientation=1 + i % 8))
    bucket.put(f"{PREFIX}clip.mp4", synth.mp4(moov_last=True))


def save_batch(workspace: Workspace, name: str, events: list[BatchedEvent], ids: list[str]) -> str:
    batch = EventBatch(connection=name, batch_id=EventBatch.id_for(ids), received_at=datetime.now(UTC), events=events)
    batch.save(workspace.state_store)
    return batch.batch_id


# --- S3, with real notifications --------------------------------------------------------------------------------


class S3Queue:
    """An SQS queue on moto that receives the bucket's ObjectCreated and ObjectRemoved notifications."""

    def __init__(self, bucket: S3TestBucket) -> None:
        self.sqs = boto3.client(
            "sqs", endpoint_url=bucket.endpoint, region_name="us-east-1",
            aws_access_key_id=bucket.KEY, aws_secret_access_key=bucket.SECRET,
        )  # fmt: skip
        self.url = self.sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bucket.client.put_bucket_notification_configuration(
            Bucket=bucket.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]},
                ]
            },
        )

    def drain(self) -> tuple[list[BatchedEvent], list[str]]:
        """Every message in the queue, parsed and deleted: the events and the message ids."""
        events: list[BatchedEvent] = []
        ids: list[str] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return events, ids
            for message in messages:
                ids.append(message["MessageId"])
                events += [BatchedEvent(key=e.key, kind=e.kind, time=e.time) for e in parse_s3_message(message["Body"])]
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


def test_s3_delta_sync_from_real_notifications(
    moto_server: Any, workspace: Workspace, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    queue = S3Queue(bucket)
    seed(bucket)
    delta_name, full_name = unique_name("delta"), unique_name("full")
    with FaultProxy(moto_server.endpoint, provider="s3") as proxy:
        workspace.write_catalog(
            route_through(bucket.entry(delta_name, prefix=PREFIX), proxy), bucket.entry(full_name, prefix=PREFIX)
        )
        assert run_sync(delta_name, dagster_instance, log_level="ERROR").ok
        assert run_sync(full_name, dagster_instance, log_level="ERROR").ok
        seeded, _ = queue.drain()
        assert len({e.key for e in seeded}) == 13  # moto really delivered one notification per upload

        new = {f"{PREFIX}new-{i}.jpg" for i in range(3)}
        overwritten = {f"{PREFIX}00.jpg", f"{PREFIX}01.jpg"}
        deleted = {f"{PREFIX}02.jpg", f"{PREFIX}03.jpg"}
        moved_from, moved_to = f"{PREFIX}04.jpg", f"{PREFIX}renamed/04.jpg"
        for i, key in enumerate(sorted(new)):
            bucket.put(key, synth.jpeg(200 + i, 150, orientation=6))
        for key in overwritten:
            bucket.put(key, synth.jpeg(320, 240, orientation=3))
        for key in deleted:
            bucket.delete(key)
        bucket.client.copy_object(
            Bucket=bucket.bucket, Key=moved_to, CopySource={"Bucket": bucket.bucket, "Key": moved_from}
        )
        bucket.delete(moved_from)
        bucket.put("elsewhere/outside.jpg", synth.jpeg(64, 64))  # an event outside the connection's prefix

        events, ids = queue.drain()
        kinds = {(e.key, e.kind) for e in events}
        assert (moved_to, "created") in kinds and (moved_from, "deleted") in kinds
        batch_id = save_batch(workspace, delta_name, events, ids)
        named = new | overwritten | deleted | {moved_from, moved_to}

        proxy.clear()
        outcome = run_sync(delta_name, dagster_instance, log_level="ERROR", event_batch=batch_id)
        assert outcome.ok, outcome.failures
        heads = [r for r in proxy.object_reads() if r.method == "HEAD"]
        gets = [r for r in proxy.object_reads() if r.method == "GET"]
        assert proxy.listings() == []
        assert sorted(r.path.split("/", 2)[2] for r in heads) == sorted(named)  # one HEAD per key, none outside
        # Content is read for the new and overwritten keys only: the moved key's facts come with it.
        assert {r.path.split("/", 2)[2] for r in gets} == new | overwritten
        assert not proxy.writes()

    assert run_sync(full_name, dagster_instance, log_level="ERROR").ok
    delta_rows, full_rows = index_rows(workspace, delta_name), index_rows(workspace, full_name)
    assert delta_rows == full_rows
    moved = [row for row in delta_rows["objects"] if row[0] == moved_from]
    assert moved and moved[0][6] is True and moved[0][7] == moved_to  # tombstoned as a move, not a delete
    assert delta_rows["violations"]  # the comparison covered some
    assert sync_kinds(workspace, delta_name) == [("full", 0), ("delta", len(named) + 1)]
    assert sync_kinds(workspace, full_name) == [("full", 0), ("full", 0)]


def test_a_head_that_keeps_failing_keeps_what_the_index_knew(
    moto_server: Any, workspace: Workspace, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HEAD that fails after every retry says nothing about the object: its row stays as it was (no tombstone, no
    change), the run succeeds for the other keys, and the scrubbed reason is in the listing's metadata."""
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    seed(bucket)
    name, flaky = unique_name("delta"), f"{PREFIX}00.jpg"
    # Six 500s in a row for the HEADs of one key: boto3's every attempt (see resources/s3_bucket.py).
    plan = FaultPlan(every=7, burst=6, kinds=("500",), methods=("HEAD",), path_contains=flaky, max_faults=6)
    with FaultProxy(moto_server.endpoint, provider="s3", plan=plan) as proxy:
        workspace.write_catalog(route_through(bucket.entry(name, prefix=PREFIX), proxy))
        assert run_sync(name, dagster_instance, log_level="ERROR").ok
        known = {row[0]: row for row in index_rows(workspace, name)["objects"]}
        bucket.put(flaky, synth.jpeg(333, 222, orientation=1))
        bucket.put(f"{PREFIX}new.jpg", synth.jpeg(90, 60, orientation=1))
        events = [BatchedEvent(key=flaky, kind="created"), BatchedEvent(key=f"{PREFIX}new.jpg", kind="created")]
        outcome = run_sync(
            name, dagster_instance, log_level="ERROR", event_batch=save_batch(workspace, name, events, ["f"])
        )
        assert outcome.ok, outcome.failures
        assert proxy.faults_total == 6
    state = ListingState.require(workspace.state_store, name)
    assert (state.new, state.changed, state.deleted, state.listed) == (1, 0, 0, 14)
    now = {row[0]: row for row in index_rows(workspace, name)["objects"]}
    assert now[flaky] == known[flaky]  # same etag and size, not deleted: the last known state
    failed = outcome.result.asset_materializations_for_node("object_listing")[0].metadata["heads_failed"].value
    assert list(failed) == [flaky] and "reading the state of" in failed[flaky]
    assert S3TestBucket.SECRET not in json.dumps(failed)


# --- every provider, from a batch built by hand ---------------------------------------------------------------------


def test_delta_sync_matches_full_sync(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    bucket = test_bucket
    seed(bucket)
    delta_name, full_name = unique_name("delta"), unique_name("full")
    workspace.write_catalog(bucket.entry(delta_name, prefix=PREFIX), bucket.entry(full_name, prefix=PREFIX))
    assert run_sync(delta_name, dagster_instance, log_level="ERROR").ok
    assert run_sync(full_name, dagster_instance, log_level="ERROR").ok

    bucket.put(f"{PREFIX}new.jpg", synth.jpeg(90, 60, orientation=8))
    bucket.put(f"{PREFIX}00.jpg", synth.jpeg(333, 222, orientation=1))
    bucket.delete(f"{PREFIX}01.jpg")
    moved = synth.jpeg(101 + 1, 80, orientation=3)  # the bytes of 02.jpg, seeded above
    bucket.put(f"{PREFIX}moved/02.jpg", moved)
    bucket.delete(f"{PREFIX}02.jpg")
    bucket.folder_marker(f"{PREFIX}empty/")
    events = [
        BatchedEvent(key=f"{PREFIX}new.jpg", kind="created"),
        BatchedEvent(key=f"{PREFIX}new.jpg", kind="created"),  # delivered twice
        BatchedEvent(key=f"{PREFIX}00.jpg", kind="deleted"),  # stale: it was deleted, then written again
        BatchedEvent(key=f"{PREFIX}00.jpg", kind="created"),
        BatchedEvent(key=f"{PREFIX}01.jpg", kind="created"),  # out of order: its deletion came later
        BatchedEvent(key=f"{PREFIX}01.jpg", kind="deleted"),
        BatchedEvent(key=f"{PREFIX}02.jpg", kind="deleted"),
        BatchedEvent(key=f"{PREFIX}moved/02.jpg", kind="created"),
        BatchedEvent(key=f"{PREFIX}05.jpg", kind="created"),  # an event for an object that did not change
        BatchedEvent(key=f"{PREFIX}empty/", kind="created"),  # a folder marker: not media
        BatchedEvent(key=f"{PREFIX}never-existed.jpg", kind="deleted"),
        BatchedEvent(key="elsewhere/x.jpg", kind="created"),  # outside the prefix
    ]
    batch_id = save_batch(workspace, delta_name, events, ["m1", "m2"])
    outcome = run_sync(delta_name, dagster_instance, log_level="ERROR", event_batch=batch_id)
    assert outcome.ok, outcome.failures
    state = ListingState.require(workspace.state_store, delta_name)
    assert (state.sync_kind, state.event_keys) == ("delta", 9)
    # A cloud pairs the rename by its content hash here; a local rename-by-copy is paired after probing instead.
    assert (state.new + state.moved, state.changed, state.deleted + state.moved) == (2, 1, 2)

    assert run_sync(full_name, dagster_instance, log_level="ERROR").ok
    assert index_rows(workspace, delta_name) == index_rows(workspace, full_name)
    assert sync_kinds(workspace, delta_name) == [("full", 0), ("delta", 9)]


def test_delta_without_a_baseline_lists_in_full(
    tmp_path: Any, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    from tests.integration.buckets import LocalTestBucket

    bucket = LocalTestBucket(tmp_path / "bucket")
    seed(bucket)
    name = unique_name("fresh")
    workspace.write_catalog(bucket.entry(name, prefix=PREFIX))
    batch_id = save_batch(workspace, name, [BatchedEvent(key=f"{PREFIX}00.jpg", kind="created")], ["m"])
    outcome = run_sync(name, dagster_instance, log_level="ERROR", event_batch=batch_id)
    assert outcome.ok, outcome.failures
    assert ListingState.require(workspace.state_store, name).listed == 13  # the whole bucket, not one key
    assert sync_kinds(workspace, name) == [("full", 1)]
    listing = outcome.result.asset_materializations_for_node("object_listing")
    assert listing[0].metadata["delta_fallback"].value.startswith("no baseline yet")


def test_delta_mass_deletion_is_blocked_like_a_full_sync(
    tmp_path: Any, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    """listing_collapse judges a delta by the whole bucket, as it would a full sync: a batch deleting a few keys
    passes, one deleting most of the bucket is blocked, and both connections agree."""
    from tests.integration.buckets import LocalTestBucket

    bucket = LocalTestBucket(tmp_path / "bucket")
    seed(bucket)
    delta_name, full_name = unique_name("delta"), unique_name("full")
    workspace.write_catalog(bucket.entry(delta_name, prefix=PREFIX), bucket.entry(full_name, prefix=PREFIX))
    for name in (delta_name, full_name):
        assert run_sync(name, dagster_instance, log_level="ERROR").ok

    few = [f"{PREFIX}{i:02d}.jpg" for i in range(3)]
    for key in few:
        bucket.delete(key)
    batch_id = save_batch(workspace, delta_name, [BatchedEvent(key=k, kind="deleted") for k in few], ["a"])
    assert run_sync(delta_name, dagster_instance, log_level="ERROR", event_batch=batch_id).ok
    assert run_sync(full_name, dagster_instance, log_level="ERROR").ok

    most = [f"{PREFIX}{i:02d}.jpg" for i in range(3, 12)]
    for key in most:
        bucket.delete(key)
    batch_id = save_batch(workspace, delta_name, [BatchedEvent(key=k, kind="deleted") for k in most], ["b"])
    delta = run_sync(delta_name, dagster_instance, log_level="ERROR", event_batch=batch_id)
    full = run_sync(full_name, dagster_instance, log_level="ERROR")
    assert delta.blocked_by and full.blocked_by
    assert delta.blocked_by == full.blocked_by  # "listing fell from 10 to 1 objects" for both
    assert index_rows(workspace, delta_name) == index_rows(workspace, full_name)  # neither tombstoned anything

    assert sync_kinds(workspace, delta_name) == [("full", 0), ("delta", 3)]


def test_a_delta_run_also_syncs_the_batches_an_earlier_run_left(
    tmp_path: Any, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    """A delta run that never reached the index leaves its batch pending; the next delta run syncs its keys too, and
    a published sync removes every batch it covered, so a run queued for one of them later finds nothing to redo."""
    from tests.integration.buckets import LocalTestBucket

    bucket = LocalTestBucket(tmp_path / "bucket")
    seed(bucket)
    delta_name, full_name = unique_name("delta"), unique_name("full")
    workspace.write_catalog(bucket.entry(delta_name, prefix=PREFIX), bucket.entry(full_name, prefix=PREFIX))
    for name in (delta_name, full_name):
        assert run_sync(name, dagster_instance, log_level="ERROR").ok

    bucket.put(f"{PREFIX}first.jpg", synth.jpeg(70, 50, orientation=6))
    first = save_batch(workspace, delta_name, [BatchedEvent(key=f"{PREFIX}first.jpg", kind="created")], ["a"])
    # The listing step alone: the run stops before the index, as a run that failed there would.
    assert run_sync(delta_name, dagster_instance, log_level="ERROR", event_batch=first, only=["object_listing"]).ok
    assert [b.batch_id for b in EventBatch.pending(workspace.state_store, delta_name)] == [first]

    bucket.delete(f"{PREFIX}03.jpg")
    second = save_batch(workspace, delta_name, [BatchedEvent(key=f"{PREFIX}03.jpg", kind="deleted")], ["b"])
    assert run_sync(delta_name, dagster_instance, log_level="ERROR", event_batch=second).ok
    assert ListingState.require(workspace.state_store, delta_name).event_keys == 2  # both batches' keys
    assert EventBatch.pending(workspace.state_store, delta_name) == []

    assert run_sync(delta_name, dagster_instance, log_level="ERROR", event_batch=first).ok  # queued, now covered
    assert ListingState.require(workspace.state_store, delta_name).event_keys == 0
    assert run_sync(full_name, dagster_instance, log_level="ERROR").ok
    assert index_rows(workspace, delta_name) == index_rows(workspace, full_name)
    assert sync_kinds(workspace, delta_name) == [("full", 0), ("delta", 2), ("delta", 0)]
