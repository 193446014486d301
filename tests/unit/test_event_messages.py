"""Bucket event bodies in the shapes each cloud delivers them (recorded from the providers' documented examples)."""

import base64
import json

import pytest

from assets.snapshots import EventBatch
from resources.event_messages import (
    EventMessageError,
    ObjectEvent,
    parse_event_grid_message,
    parse_pubsub_message,
    parse_s3_message,
)

S3_PUT = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventTime": "2026-11-30T12:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "media", "arn": "arn:aws:s3:::media"},
                "object": {"key": "raw/my+photo%281%29.jpg", "size": 1024, "eTag": "abc"},
            },
        },
        {
            "eventName": "ObjectRemoved:Delete",
            "eventTime": "2026-11-30T12:00:01.000Z",
            "s3": {"bucket": {"name": "media"}, "object": {"key": "raw/old.jpg"}},
        },
        {"eventName": "ObjectRestore:Completed", "s3": {"bucket": {"name": "media"}, "object": {"key": "x"}}},
    ]
}


def test_s3_records_decode_keys_and_kinds() -> None:
    events = parse_s3_message(json.dumps(S3_PUT))
    assert events == [
        ObjectEvent("media", "raw/my photo(1).jpg", "created", "2026-11-30T12:00:00.000Z"),
        ObjectEvent("media", "raw/old.jpg", "deleted", "2026-11-30T12:00:01.000Z"),
    ]


def test_s3_through_sns_and_test_event() -> None:
    wrapped = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(S3_PUT)}
    assert [e.key for e in parse_s3_message(json.dumps(wrapped))] == ["raw/my photo(1).jpg", "raw/old.jpg"]
    assert parse_s3_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "media"})) == []


@pytest.mark.parametrize("body", ["not json", "[1, 2]", json.dumps({"hello": 1})])
def test_s3_non_events_raise_with_the_reason(body: str) -> None:
    with pytest.raises(EventMessageError, match="SQS message body"):
        parse_s3_message(body)


def _grid(event_type: str, name: str) -> dict:
    return {
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct",
        "subject": f"/blobServices/default/containers/media/blobs/{name}",
        "eventType": event_type,
        "eventTime": "2026-11-30T12:00:00Z",
        "id": "1",
        "data": {"api": "PutBlob", "url": f"https://acct.blob.core.windows.net/media/{name}"},
        "dataVersion": "",
        "metadataVersion": "1",
    }


def test_event_grid_base64_as_event_grid_writes_it() -> None:
    body = base64.b64encode(json.dumps(_grid("Microsoft.Storage.BlobCreated", "a dir/b.png")).encode()).decode()
    assert parse_event_grid_message(body) == [ObjectEvent("media", "a dir/b.png", "created", "2026-11-30T12:00:00Z")]


def test_event_grid_plain_json_cloudevents_and_ignored_types() -> None:
    cloud = {
        "specversion": "1.0",
        "type": "Microsoft.Storage.BlobDeleted",
        "subject": "/blobServices/default/containers/media/blobs/x.jpg",
        "time": "2026-11-30T12:00:02Z",
    }
    validation = {"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": ""}
    events = parse_event_grid_message(json.dumps([cloud, validation]))
    assert events == [ObjectEvent("media", "x.jpg", "deleted", "2026-11-30T12:00:02Z")]


@pytest.mark.parametrize("body", ["%%%", json.dumps({**_grid("Microsoft.Storage.BlobCreated", "x"), "subject": "/x"})])
def test_event_grid_unreadable(body: str) -> None:
    with pytest.raises(EventMessageError):
        parse_event_grid_message(body)


def test_pubsub_attributes() -> None:
    attrs = {
        "eventType": "OBJECT_FINALIZE",
        "bucketId": "media",
        "objectId": "clips/a b.mp4",
        "eventTime": "2026-11-30T12:00:00.1Z",
        "payloadFormat": "JSON_API_V1",
    }
    assert parse_pubsub_message(attrs, b"{}") == [ObjectEvent("media", "clips/a b.mp4", "created", attrs["eventTime"])]
    overwritten = {**attrs, "eventType": "OBJECT_DELETE", "overwrittenByGeneration": "2"}
    assert parse_pubsub_message(overwritten)[0].kind == "deleted"
    assert parse_pubsub_message({**attrs, "eventType": "OBJECT_METADATA_UPDATE"}) == []
    with pytest.raises(EventMessageError, match="objectId"):
        parse_pubsub_message({"eventType": "OBJECT_DELETE", "bucketId": "media"})


def test_batch_id_ignores_message_order() -> None:
    assert EventBatch.id_for(["b", "a"]) == EventBatch.id_for(["a", "b"]) != EventBatch.id_for(["a"])
