"""The queue readers' mapping of each SDK's message objects, built with the SDKs' own types from recorded bodies.

GCS notifications arrive through Pub/Sub, for which no local server installs from the package registries, so the
Pub/Sub reader is tested here on real `PullResponse` objects served by a small in-memory subscriber client: the
mapping, the deadline extension, the bounded pull loop and the acknowledgement. SQS and the Storage Queue also run
against real servers in tests/integration/test_event_sensor.py.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from azure.storage.queue import QueueMessage
from google.api_core.exceptions import DeadlineExceeded, PermissionDenied
from google.cloud.pubsub_v1 import types

from resources.catalog import Connection
from resources.event_messages import ObjectEvent
from resources.event_queues import (
    VISIBILITY_TIMEOUT_S,
    PubSubSubscription,
    QueueError,
    open_queue,
    pubsub_message,
    queue_account_url,
    sqs_message,
    storage_queue_message,
)

SUBSCRIPTION = "projects/test/subscriptions/bucket-events"


def test_sqs_entry_maps_id_receipt_and_decoded_keys() -> None:
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-30T12:00:00.000Z",
                "s3": {"bucket": {"name": "media"}, "object": {"key": "raw/a+b.jpg"}},
            }
        ]
    }
    message = sqs_message({"MessageId": "m-1", "ReceiptHandle": "rh-1", "Body": json.dumps(body)})
    assert (message.message_id, message.ack_token, message.error) == ("m-1", "rh-1", None)
    assert message.events == (ObjectEvent("media", "raw/a b.jpg", "created", "2026-11-30T12:00:00.000Z"),)


def test_an_unreadable_message_comes_back_marked_with_its_token() -> None:
    message = sqs_message({"MessageId": "m-2", "ReceiptHandle": "rh-2", "Body": "{not json"})
    assert message.events == () and message.ack_token == "rh-2"
    assert message.error and "not JSON" in message.error


def test_storage_queue_message_decodes_event_grid_base64_and_carries_id_and_pop_receipt() -> None:
    event = {
        "subject": "/blobServices/default/containers/media/blobs/raw/b c.png",
        "eventType": "Microsoft.Storage.BlobDeleted",
        "eventTime": "2026-11-30T12:00:00Z",
    }
    content = base64.b64encode(json.dumps(event).encode()).decode()
    message = storage_queue_message(QueueMessage(content, id="id-7", pop_receipt="AgAAAA=="))
    assert message.message_id == "id-7"
    assert message.ack_token.partition(":") == ("id-7", ":", "AgAAAA==")
    assert message.events == (ObjectEvent("media", "raw/b c.png", "deleted", "2026-11-30T12:00:00Z"),)


def pull_response(*items: tuple[str, str, dict[str, str]]) -> Any:
    return types.PullResponse(
        received_messages=[
            {"ack_id": ack, "message": {"message_id": mid, "attributes": attrs, "data": b'{"kind": "storage#object"}'}}
            for ack, mid, attrs in items
        ]
    )


def finalize(key: str) -> dict[str, str]:
    return {"eventType": "OBJECT_FINALIZE", "bucketId": "media", "objectId": key, "eventTime": "2026-11-30T12:00:00Z"}


def test_pubsub_received_message_maps_attributes() -> None:
    (received,) = pull_response(("ack-1", "101", finalize("raw/x.png"))).received_messages
    message = pubsub_message(received)
    assert (message.message_id, message.ack_token) == ("101", "ack-1")
    assert message.events == (ObjectEvent("media", "raw/x.png", "created", "2026-11-30T12:00:00Z"),)


class Subscriber:
    """An in-memory stand-in for pubsub_v1.SubscriberClient: serves queued PullResponses and records the calls."""

    def __init__(self, *responses: Any) -> None:
        self.responses = list(responses)
        self.pulls: list[int] = []
        self.deadlines: list[tuple[list[str], int]] = []
        self.acked: list[list[str]] = []

    def pull(self, *, subscription: str, max_messages: int, timeout: float) -> Any:
        assert subscription == SUBSCRIPTION
        self.pulls.append(max_messages)
        if not self.responses:
            raise DeadlineExceeded("no messages")
        return self.responses.pop(0)

    def modify_ack_deadline(self, *, subscription: str, ack_ids: list[str], ack_deadline_seconds: int) -> None:
        self.deadlines.append((ack_ids, ack_deadline_seconds))

    def acknowledge(self, *, subscription: str, ack_ids: list[str]) -> None:
        self.acked.append(ack_ids)


def test_pubsub_reader_pulls_until_empty_extends_deadlines_and_acks() -> None:
    client = Subscriber(
        pull_response(("a1", "1", finalize("k1")), ("a2", "2", finalize("k2"))),
        pull_response(("a3", "3", {"eventType": "OBJECT_METADATA_UPDATE", "bucketId": "media", "objectId": "k3"})),
    )
    reader = PubSubSubscription("gcs-conn", client, SUBSCRIPTION, (PermissionDenied,))
    messages = reader.receive(10)
    assert [m.message_id for m in messages] == ["1", "2", "3"]
    assert messages[2].events == () and messages[2].error is None  # not an object change: nothing to sync
    assert client.pulls == [10, 8, 7], "each pull asks only for what the tick still has room for"
    assert client.deadlines == [(["a1", "a2"], VISIBILITY_TIMEOUT_S), (["a3"], VISIBILITY_TIMEOUT_S)]
    assert reader.ack(["a1", "a2", "a3"]) == 3
    assert client.acked == [["a1", "a2", "a3"]]


def test_pubsub_reader_stops_at_max() -> None:
    client = Subscriber(pull_response(("a1", "1", finalize("k1")), ("a2", "2", finalize("k2"))))
    messages = PubSubSubscription("gcs-conn", client, SUBSCRIPTION, (PermissionDenied,)).receive(2)
    assert len(messages) == 2 and client.pulls == [2]


def test_pubsub_reader_makes_no_further_pull_once_the_tick_deadline_has_passed() -> None:
    client = Subscriber(pull_response(("a1", "1", finalize("k1"))), pull_response(("a2", "2", finalize("k2"))))
    reader = PubSubSubscription("gcs-conn", client, SUBSCRIPTION, (PermissionDenied,))
    messages = reader.receive(10, deadline=time.monotonic() - 1)
    assert [m.message_id for m in messages] == ["1"], "one pull always, then none past the deadline"
    assert client.pulls == [10]


def test_pubsub_denied_is_a_queue_error_naming_the_connection() -> None:
    class Denied(Subscriber):
        def pull(self, **kwargs: Any) -> Any:
            raise PermissionDenied("not authorized: https://pubsub.example/v1/x?sig=abcdefsecretsig")

    with pytest.raises(QueueError) as info:
        PubSubSubscription("gcs-conn", Denied(), SUBSCRIPTION, (PermissionDenied,)).receive(5)
    assert "connection 'gcs-conn'" in str(info.value) and "Pub/Sub pull failed" in str(info.value)
    assert "abcdefsecretsig" not in str(info.value)


def test_a_gcs_connection_opens_a_subscriber_on_its_subscription() -> None:
    conn = Connection(
        name="gcsev", provider="gcs", bucket="media", auth={"mode": "anonymous"}, events={"queue": SUBSCRIPTION}
    )
    reader = open_queue(conn)
    assert isinstance(reader, PubSubSubscription)
    assert reader.subscription == SUBSCRIPTION and reader.connection == "gcsev"


def azure(endpoint: str | None = None, events_endpoint: str | None = None) -> Connection:
    events: dict[str, Any] = {"queue": "blob-events"}
    if events_endpoint:
        events["endpoint"] = events_endpoint
    return Connection(
        name="az", provider="azure", bucket="media", options={"account": "acct", "endpoint": endpoint}, events=events
    )


@pytest.mark.parametrize(
    ("blob", "queue"),
    [
        ("https://acct.blob.core.windows.net", "https://acct.queue.core.windows.net"),
        ("https://acct.blob.core.chinacloudapi.cn/", "https://acct.queue.core.chinacloudapi.cn"),
        ("http://127.0.0.1:10000/devstoreaccount1", "http://127.0.0.1:10001/devstoreaccount1"),
    ],
)
def test_azure_queue_endpoint_is_derived_from_the_blob_endpoint(blob: str, queue: str) -> None:
    assert queue_account_url(azure(blob), blob) == queue


def test_azure_queue_endpoint_that_cannot_be_derived_asks_for_events_endpoint() -> None:
    blob = "http://127.0.0.1:41234/devstoreaccount1"
    assert queue_account_url(azure(blob, "http://127.0.0.1:5/acct/"), blob) == "http://127.0.0.1:5/acct"
    with pytest.raises(Exception, match=r"field 'events.endpoint'"):
        queue_account_url(azure(blob), blob)


def test_opening_a_queue_whose_credential_variable_is_unset_is_a_queue_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTS_TEST_UNSET_KEY", raising=False)
    conn = Connection(
        name="s3ev",
        provider="s3",
        bucket="media",
        auth={"mode": "keys", "access_key_id_env": "EVENTS_TEST_UNSET_KEY", "secret_access_key_env": "X_SECRET"},
        events={"queue": "https://sqs.eu-west-1.amazonaws.com/123456789012/q"},
    )
    with pytest.raises(QueueError, match="EVENTS_TEST_UNSET_KEY"):
        open_queue(conn)
