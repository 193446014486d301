"""Bucket event messages, as each cloud delivers them to a queue, read into one shape: which key changed, and how.

Pure parsing, no SDK and no Dagster: the sensor (pipelines/event_sensor.py) drains the queue and hands each body
here, and the unit tests feed recorded bodies. A message that is not an object event (S3's `s3:TestEvent`, an Event
Grid subscription-validation event, a GCS metadata update) yields no event rather than an error, and a body that
cannot be read at all raises `EventMessageError` naming what was wrong, so the sensor can drop and log it instead
of stalling the queue on it.

The event's kind is a hint, not the truth: a delta sync reads every named key's current state from the bucket (one
HEAD each), so events that arrive late, twice or out of order still leave the index as a full sync would.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

EventKind = Literal["created", "deleted"]


class EventMessageError(ValueError):
    """A queue message that is not a bucket event in any schema bucket-sync reads."""


@dataclass(frozen=True)
class ObjectEvent:
    """One object created (or overwritten) or deleted in `bucket`, at `time` (ISO 8601, as the cloud wrote it)."""

    bucket: str
    key: str
    kind: EventKind
    time: str | None = None


def _json(body: str | bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventMessageError(f"{what} is not JSON: {exc}") from None


def parse_s3_message(body: str | bytes) -> list[ObjectEvent]:
    """An S3 event notification delivered to SQS, directly or wrapped by SNS.

    S3 URL-encodes keys in notifications (a space arrives as `+`), so the key is decoded here.
    """
    doc = _json(body, "SQS message body")
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        doc = _json(doc["Message"], "SNS notification's Message")
    if not isinstance(doc, dict):
        raise EventMessageError("SQS message body is not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise EventMessageError("SQS message body has no 'Records': not an S3 event notification")
    events = []
    for record in records:
        name = str(record.get("eventName", ""))
        kind: EventKind | None = (
            "created" if name.startswith("ObjectCreated") else "deleted" if name.startswith("ObjectRemoved") else None
        )
        if kind is None:
            continue
        try:
            bucket = record["s3"]["bucket"]["name"]
            key = unquote_plus(record["s3"]["object"]["key"])
        except (KeyError, TypeError):
            raise EventMessageError(f"S3 event record '{name}' lacks s3.bucket.name or s3.object.key") from None
        events.append(ObjectEvent(bucket, key, kind, record.get("eventTime")))
    return events


_BLOB_EVENTS: dict[str, EventKind] = {
    "Microsoft.Storage.BlobCreated": "created",
    "Microsoft.Storage.BlobDeleted": "deleted",
}


def _event_grid_body(body: str | bytes) -> Any:
    """Event Grid writes each event to a Storage Queue base64-encoded; a queue fed by hand may hold plain JSON."""
    text = body.decode() if isinstance(body, bytes) else body
    if text.lstrip().startswith(("{", "[")):
        return _json(text, "queue message")
    try:
        return _json(base64.b64decode(text, validate=True), "queue message (base64)")
    except binascii.Error:
        raise EventMessageError("queue message is neither JSON nor base64-encoded JSON") from None


def parse_event_grid_message(body: str | bytes) -> list[ObjectEvent]:
    """Azure Event Grid blob events (Event Grid schema or CloudEvents 1.0) delivered to a Storage Queue.

    The container and blob name come from the subject, `/blobServices/default/containers/<container>/blobs/<name>`,
    which Event Grid does not encode.
    """
    doc = _event_grid_body(body)
    items = doc if isinstance(doc, list) else [doc]
    events = []
    for item in items:
        if not isinstance(item, dict):
            raise EventMessageError("queue message holds something other than Event Grid events")
        kind = _BLOB_EVENTS.get(str(item.get("eventType") or item.get("type") or ""))
        if kind is None:
            continue
        subject = str(item.get("subject", ""))
        head, sep, name = subject.partition("/blobs/")
        container = head.removeprefix("/blobServices/default/containers/")
        if not sep or not name or container == head:
            raise EventMessageError(f"Event Grid blob event has an unexpected subject: '{subject}'")
        events.append(ObjectEvent(container, name, kind, item.get("eventTime") or item.get("time")))
    return events


_GCS_EVENTS: dict[str, EventKind] = {
    "OBJECT_FINALIZE": "created",
    "OBJECT_DELETE": "deleted",
    "OBJECT_ARCHIVE": "deleted",  # a versioned bucket's live version became noncurrent: gone from the listing
}


def parse_pubsub_message(attributes: dict[str, str], data: bytes = b"") -> list[ObjectEvent]:
    """A Cloud Storage notification delivered through Pub/Sub.

    Everything needed is in the message attributes (`eventType`, `bucketId`, `objectId`, `eventTime`), so the
    payload format (JSON_API_V1 or NONE) does not matter. An overwrite arrives as OBJECT_FINALIZE of the new
    generation plus OBJECT_DELETE of the old one with `overwrittenByGeneration`: both name the key, and the delta
    sync's read of the key's current state settles it.
    """
    kind = _GCS_EVENTS.get(attributes.get("eventType", ""))
    if kind is None:
        return []
    bucket, key = attributes.get("bucketId"), attributes.get("objectId")
    if not bucket or not key:
        raise EventMessageError(f"Pub/Sub {attributes.get('eventType')} message lacks bucketId or objectId")
    return [ObjectEvent(bucket, key, kind, attributes.get("eventTime"))]
