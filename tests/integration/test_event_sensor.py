"""The `bucket_events` sensor against real queues: S3 notifications that moto's S3 really sends to its SQS, and Event
Grid blob events (base64-encoded, as Event Grid writes them) in Azurite's Storage Queue; a real Dagster instance and a
real state store. GCS Pub/Sub has no local server installable from the package registries: its reader is covered by
unit tests on recorded messages (tests/unit/test_event_queues.py).

Each test walks the acknowledgement protocol: the first tick saves the batch and requests one run, and deletes
nothing; a tick before the run exists deletes nothing; a redelivered batch gets the same run key; the tick after a run
with that key exists deletes the messages.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.storage.tags import PARTITION_NAME_TAG, RUN_KEY_TAG
from dagster._core.test_utils import create_run_for_test

from assets.snapshots import EventBatch
from pipelines.definitions import defs
from pipelines.event_sensor import EVENT_RUN_TAGS, bucket_events, delta_run_config, event_run_key, load_cursor
from resources.catalog_resource import CatalogResource
from resources.state import StateStore
from tests.conftest import Workspace
from tests.integration.buckets import AzureTestBucket, S3TestBucket, unique_name
from tests.servers import Server

pytestmark = pytest.mark.integration

PREFIX = "photos/"


def tick(instance: DagsterInstance, cursor: str | None) -> SensorExecutionData:
    """One sensor evaluation against the real instance and the workspace's catalog and state store, resolved as the
    daemon resolves it: each request's job and partition looked up in the code location's repository."""
    resources = {"catalog": CatalogResource(), "state_store": StateStore()}
    repository = defs.get_repository_def()
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources, repository_def=repository)
    with partition_loading_context(dynamic_partitions_store=instance):  # as the daemon evaluates a tick
        return bucket_events.evaluate_tick(context)


def create_requested_run(instance: DagsterInstance, name: str, run_key: str) -> None:
    """What the sensor daemon does with a RunRequest: a run of the sync job carrying the run key as a tag."""
    create_run_for_test(
        instance,
        job_name="sync_connection",
        tags={RUN_KEY_TAG: run_key, PARTITION_NAME_TAG: name, **EVENT_RUN_TAGS},
    )


def walk_protocol(
    workspace: Workspace,
    instance: DagsterInstance,
    name: str,
    expected_keys: list[str],
    held: Callable[[], int],
    redeliver: Callable[[list[str]], None],
) -> None:
    """The flow every queue must follow. `held()` counts the messages still in the queue (visible or hidden);
    `redeliver(tokens)` makes those deliveries visible again, as an expired visibility timeout would."""
    instance.add_dynamic_partitions("connections", [name])

    data = tick(instance, None)
    (request,) = data.run_requests
    (pending,) = load_cursor(data.cursor)[name]
    run_key = event_run_key(name, pending.batch_id)
    assert request.run_key == run_key
    assert request.partition_key == name and request.tags[PARTITION_NAME_TAG] == name
    assert request.run_config == delta_run_config(pending.batch_id)
    assert request.tags["bucket-sync/sync"] == "delta"
    batch = EventBatch.require(workspace.state_store, name, pending.batch_id)
    assert batch.keys == expected_keys
    assert held() == len(pending.tokens), "the messages the run covers must stay in the queue until it exists"

    data = tick(instance, data.cursor)  # no run yet: nothing acknowledged, nothing new requested
    assert data.run_requests == [] and data.skip_message
    assert held() == len(pending.tokens)
    assert load_cursor(data.cursor)[name][0].batch_id == pending.batch_id

    redeliver(pending.tokens)  # the visibility timeout ran out before the acknowledgement
    data = tick(instance, data.cursor)
    assert [r.run_key for r in data.run_requests] == [run_key], "a redelivered batch must get the same run key"
    (again,) = load_cursor(data.cursor)[name]
    assert again.batch_id == pending.batch_id

    create_requested_run(instance, name, run_key)
    data = tick(instance, data.cursor)
    assert data.run_requests == [] and "acknowledged" in str(data.skip_message)
    assert held() == 0, "once the run exists, its messages are deleted"
    assert name not in load_cursor(data.cursor)


@pytest.fixture
def sqs(moto_server: Server) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=moto_server.endpoint,
        aws_access_key_id=S3TestBucket.KEY,
        aws_secret_access_key=S3TestBucket.SECRET,
        region_name="us-east-1",
    )


def test_s3_notifications_through_sqs_request_one_delta_sync_and_are_deleted_after_it_exists(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    moto_server: Server,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    queue_url = sqs.create_queue(QueueName=unique_name("events"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket.client.put_bucket_notification_configuration(
        Bucket=bucket.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]
        },
    )
    bucket.put(f"{PREFIX}cat one.png", b"first")  # a space: S3 sends the key URL-encoded
    bucket.put(f"{PREFIX}dog.png", b"dog")
    bucket.put(f"{PREFIX}cat one.png", b"overwritten")
    bucket.delete(f"{PREFIX}dog.png")
    bucket.put("elsewhere/skip.png", b"outside the prefix")
    name = unique_name("s3ev")
    workspace.write_catalog(bucket.entry(name, prefix=PREFIX, events={"queue": queue_url}))

    def held() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def redeliver(tokens: list[str]) -> None:
        for token in tokens:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=token, VisibilityTimeout=0)

    walk_protocol(workspace, dagster_instance, name, [f"{PREFIX}cat one.png", f"{PREFIX}dog.png"], held, redeliver)


def event_grid_message(container: str, key: str, event_type: str) -> str:
    """One blob event in Event Grid's schema, base64-encoded as Event Grid writes it to a Storage Queue."""
    event = {
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/{container}/blobs/{key}",
        "eventType": event_type,
        "id": str(uuid.uuid4()),
        "data": {"api": "PutBlob" if event_type.endswith("Created") else "DeleteBlob", "blobType": "BlockBlob"},
        "dataVersion": "",
        "metadataVersion": "1",
        "eventTime": "2026-11-30T12:00:00.0000000Z",
    }
    return base64.b64encode(json.dumps(event).encode()).decode()


def test_event_grid_blob_events_in_azurite_queue_request_one_delta_sync_and_are_deleted_after_it_exists(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    azurite: Server,
    azure_admin: Any,
    azurite_queue: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.storage.queue import QueueClient

    bucket = AzureTestBucket(azurite, azure_admin, monkeypatch)
    container = bucket.container.container_name
    queue_name = unique_name("events")
    queue = QueueClient(
        azurite_queue.extra["queue_endpoint"],
        queue_name,
        credential={"account_name": azurite_queue.extra["account"], "account_key": azurite_queue.extra["key"]},
    )
    queue.create_queue()
    for key, kind in [
        ("a.png", "Created"),
        ("b.png", "Created"),
        ("a.png", "Created"),
        ("b.png", "Deleted"),
        ("folder/", "Created"),
    ]:
        queue.send_message(event_grid_message(container, f"{PREFIX}{key}", f"Microsoft.Storage.Blob{kind}"))
    queue.send_message(event_grid_message("another-container", f"{PREFIX}c.png", "Microsoft.Storage.BlobCreated"))
    queue.send_message("not an event at all")  # a poison message: dropped, logged, deleted at once
    name = unique_name("azev")
    events = {"queue": queue_name, "endpoint": azurite_queue.extra["queue_endpoint"]}
    workspace.write_catalog(bucket.entry(name, prefix=PREFIX, events=events))

    def held() -> int:
        return queue.get_queue_properties().approximate_message_count  # hidden messages included

    def redeliver(tokens: list[str]) -> None:
        for token in tokens:
            message_id, _, pop_receipt = token.partition(":")
            queue.update_message(message_id, pop_receipt, visibility_timeout=0)

    walk_protocol(workspace, dagster_instance, name, [f"{PREFIX}a.png", f"{PREFIX}b.png"], held, redeliver)


def test_a_queue_that_cannot_be_reached_is_a_note_and_other_connections_proceed(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    moto_server: Server,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    queue_url = sqs.create_queue(QueueName=unique_name("events"))["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": bucket.bucket}, "object": {"key": "x.png"}},
                    }
                ]
            }
        ),
    )
    good, bad, unknown = unique_name("good"), unique_name("bad"), unique_name("new")
    dead = "http://127.0.0.1:9/123456789012/nowhere"  # the discard port: nothing listens
    workspace.write_catalog(
        bucket.entry(bad, events={"queue": dead}),
        bucket.entry(unknown, events={"queue": queue_url}),  # not a partition yet: its queue is left alone
        bucket.entry(good, events={"queue": queue_url}),
    )
    dagster_instance.add_dynamic_partitions("connections", [good, bad])
    data = tick(dagster_instance, None)
    assert [r.partition_key for r in data.run_requests] == [good]
    assert bad not in load_cursor(data.cursor) and unknown not in load_cursor(data.cursor)
    logged = capsys.readouterr().err  # the sensor's log, as the daemon would write it
    assert f"{bad}: event queue failed, will retry next tick" in logged
    assert f"{unknown}: not a partition yet" in logged
    assert S3TestBucket.SECRET not in str(data.run_requests) + str(data.cursor) + logged


def test_s3_events_end_to_end_sensor_then_delta_run_then_acknowledgement(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    moto_server: Server,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole loop on real parts: moto's notifications, the sensor's tick, the run it asks for executed as the
    daemon would execute it (its config and run key), the acknowledgement on the next tick, and an index equal to a
    full sync's of the same bucket."""
    from demo import synth
    from pipelines.runner import run_sync
    from tests.integration.test_delta_sync import index_rows, sync_kinds

    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    for i in range(6):
        bucket.put(f"{PREFIX}{i}.jpg", synth.jpeg(60 + i, 40, orientation=1 + i))
    name, full_name = unique_name("s3e2e"), unique_name("s3full")
    queue_url = sqs.create_queue(QueueName=unique_name("events"))["QueueUrl"]
    workspace.write_catalog(
        bucket.entry(name, prefix=PREFIX, events={"queue": queue_url}), bucket.entry(full_name, prefix=PREFIX)
    )
    for connection in (name, full_name):
        assert run_sync(connection, dagster_instance, log_level="ERROR").ok
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket.client.put_bucket_notification_configuration(
        Bucket=bucket.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]
        },
    )
    bucket.put(f"{PREFIX}new.jpg", synth.jpeg(91, 61, orientation=6))
    bucket.put(f"{PREFIX}0.jpg", synth.jpeg(92, 62, orientation=1))
    bucket.delete(f"{PREFIX}1.jpg")

    data = tick(dagster_instance, None)
    (request,) = data.run_requests
    batch_id = request.run_config["ops"]["object_listing"]["config"]["event_batch"]
    outcome = run_sync(
        name, dagster_instance, log_level="ERROR", event_batch=batch_id, tags={RUN_KEY_TAG: request.run_key}
    )
    assert outcome.ok, outcome.failures
    data = tick(dagster_instance, data.cursor)
    assert "acknowledged" in str(data.skip_message)
    leftover = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert leftover == [], "the run exists: its messages are deleted"
    assert EventBatch.pending(workspace.state_store, name) == [], "the published sync removed the batch it covered"

    assert run_sync(full_name, dagster_instance, log_level="ERROR").ok
    assert index_rows(workspace, name) == index_rows(workspace, full_name)
    assert sync_kinds(workspace, name) == [("full", 0), ("delta", 3)]
