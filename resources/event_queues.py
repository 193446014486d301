"""The queues that bucket events arrive in, read the same way for every cloud: take a bounded batch of messages, and
acknowledge them later, by token, once the sync that covers them has been requested.

One small reader per provider: SQS (S3 event notifications), a Pub/Sub subscription (GCS notifications), a Storage
Queue (Azure Event Grid blob events). Each authenticates with the connection's own credentials, resolved by the
provider's bucket module (modes, secrets by environment variable name), or with `events.auth` when the catalog gives
other ones. The SDKs are imported only when a queue of that provider is opened.

A message received is hidden from other readers for `VISIBILITY_TIMEOUT_S`, long enough to outlast the gap until the
sensor's next tick, when it is acknowledged (deleted). A message that is not a bucket event in any schema comes back
with `error` set, so the sensor can log it and acknowledge it at once: a poison message must not block the queue.
Every text that leaves here is scrubbed: SAS tokens and signatures travel in the queue SDKs' request URLs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from resources.bucket import ConnectionMisconfigured
from resources.catalog import Connection
from resources.event_messages import (
    EventMessageError,
    ObjectEvent,
    parse_event_grid_message,
    parse_pubsub_message,
    parse_s3_message,
)
from resources.secrets import scrub

#: How long a received message stays hidden before the queue offers it again: the sensor acknowledges it on its next
#: tick (every 30 s or so), and a slow tick or a daemon restart must not let it come back meanwhile as a new batch.
VISIBILITY_TIMEOUT_S = 300
#: The most messages each cloud hands out per call.
SQS_PER_CALL = 10
STORAGE_QUEUE_PER_CALL = 32
PUBSUB_PER_CALL = 1000
#: How long the first receive waits for a message to arrive (long polling); later calls in a tick do not wait.
FIRST_WAIT_S = 1
#: How long one Pub/Sub pull may take; an empty subscription answers sooner, or with DeadlineExceeded.
PULL_TIMEOUT_S = 10


class QueueError(Exception):
    """The queue cannot be opened, reached or read. The message names the connection and is scrubbed."""


@dataclass(frozen=True)
class ReceivedMessage:
    """One queue message: its id (stable across redeliveries), the token that acknowledges this delivery of it, and
    the bucket events it holds, or why it could not be read (`error`)."""

    message_id: str
    ack_token: str
    events: tuple[ObjectEvent, ...] = ()
    error: str | None = None


class EventQueueReader(Protocol):
    """What the `bucket_events` sensor needs of a queue; the unit tests give it an in-memory one."""

    def receive(self, max_n: int, deadline: float | None = None) -> list[ReceivedMessage]:
        """Up to `max_n` messages, each hidden from other readers for VISIBILITY_TIMEOUT_S; no further call to the
        queue once `time.monotonic()` has passed `deadline` (the first call is always made)."""
        ...

    def ack(self, tokens: list[str]) -> int:
        """Delete the messages these tokens were delivered with; returns how many were.

        A token the queue no longer honours (its message was redelivered since) is not an error: the message will be
        received again and synced again, which a delta sync does harmlessly.
        """
        ...


def _read(message_id: str, token: str, parse: Callable[[], list[ObjectEvent]]) -> ReceivedMessage:
    try:
        return ReceivedMessage(message_id, token, tuple(parse()))
    except EventMessageError as exc:
        return ReceivedMessage(message_id, token, error=scrub(str(exc)))


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- S3: event notifications in an SQS queue -------------------------------------------------------------------

_SQS_HOST_REGION = re.compile(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def sqs_message(message: dict[str, Any]) -> ReceivedMessage:
    """One SQS ReceiveMessage entry: the body is an S3 notification (or SNS-wrapped one)."""
    return _read(message["MessageId"], message["ReceiptHandle"], lambda: parse_s3_message(message.get("Body", "")))


class SQSQueue:
    """An SQS queue that S3 sends a bucket's ObjectCreated/ObjectRemoved notifications to."""

    def __init__(self, connection: str, client: Any, queue_url: str, errors: tuple[type[Exception], ...]) -> None:
        self.connection, self.client, self.queue_url, self.errors = connection, client, queue_url, errors

    @classmethod
    def open(cls, conn: Connection) -> SQSQueue:
        """The queue with the connection's credentials; its endpoint is `events.endpoint` or the queue URL's own
        origin (https://sqs.<region>.amazonaws.com, or a moto server's), and its region the URL's when it says one."""
        from botocore.exceptions import BotoCoreError, ClientError

        from resources.s3_bucket import S3Bucket

        assert conn.events is not None
        url = conn.events.queue
        parts = urlsplit(url)
        region = _SQS_HOST_REGION.match(parts.hostname or "")
        endpoint = conn.events.endpoint or f"{parts.scheme}://{parts.netloc}"
        queue_conn = conn.queue_connection()
        bucket = S3Bucket.open(queue_conn, queue_conn.provider_settings())
        client = bucket.service_client("sqs", endpoint, region.group(1) if region else None)
        return cls(conn.name, client, url, (ClientError, BotoCoreError))

    def receive(self, max_n: int, deadline: float | None = None) -> list[ReceivedMessage]:
        out: list[ReceivedMessage] = []
        while len(out) < max_n and not (out and _past(deadline)):
            try:
                answer = self.client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(SQS_PER_CALL, max_n - len(out)),
                    VisibilityTimeout=VISIBILITY_TIMEOUT_S,
                    WaitTimeSeconds=0 if out else FIRST_WAIT_S,
                )
            except self.errors as exc:
                if out:  # what was received is hidden now: hand it over, the rest waits for the next tick
                    break
                raise QueueError(f"connection '{self.connection}': SQS receive failed: {scrub(str(exc))}") from None
            messages = answer.get("Messages", [])
            out.extend(sqs_message(m) for m in messages)
            if not messages:
                break
        return out

    def ack(self, tokens: list[str]) -> int:
        deleted = 0
        for chunk in _chunks(tokens, SQS_PER_CALL):
            entries = [{"Id": str(i), "ReceiptHandle": token} for i, token in enumerate(chunk)]
            try:
                answer = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except self.errors as exc:
                raise QueueError(f"connection '{self.connection}': SQS delete failed: {scrub(str(exc))}") from None
            deleted += len(answer.get("Successful", []))
        return deleted


# --- Azure: Event Grid blob events in a Storage Queue ----------------------------------------------------------

#: Azurite's default blob and queue endpoints for its development account.
_AZURITE_BLOB = "http://127.0.0.1:10000/devstoreaccount1"
_AZURITE_QUEUE = "http://127.0.0.1:10001/devstoreaccount1"


def queue_account_url(conn: Connection, blob_account_url: str) -> str:
    """The account's queue endpoint: `events.endpoint`, else the blob endpoint with `.blob.` read as `.queue.`
    (public, sovereign and private-link hosts alike; Azurite's default ports too). An emulator or proxy endpoint that
    says neither cannot be guessed, so the catalog must name it."""
    assert conn.events is not None
    if conn.events.endpoint:
        return conn.events.endpoint.rstrip("/")
    url = blob_account_url.rstrip("/")
    if url == _AZURITE_BLOB:
        return _AZURITE_QUEUE
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ".blob." in host:
        return url.replace(host, host.replace(".blob.", ".queue.", 1), 1)
    raise ConnectionMisconfigured(
        f"connection '{conn.name}', field 'events.endpoint': the queue endpoint cannot be derived from the blob "
        f"endpoint {scrub(url)}; give the account's queue endpoint (Azurite: http://127.0.0.1:10001/devstoreaccount1)"
    )


def storage_queue_message(message: Any) -> ReceivedMessage:
    """One Storage Queue message (azure.storage.queue.QueueMessage). Event Grid writes each event base64-encoded;
    the content is read as text as it is stored, and event_messages decodes it."""
    token = f"{message.id}:{message.pop_receipt}"
    return _read(message.id, token, lambda: parse_event_grid_message(message.content or ""))


class StorageQueue:
    """An Azure Storage Queue that an Event Grid subscription sends a container's BlobCreated/BlobDeleted events to."""

    def __init__(self, connection: str, client: Any, errors: tuple[type[Exception], ...]) -> None:
        self.connection, self.client, self.errors = connection, client, errors

    @classmethod
    def open(cls, conn: Connection) -> StorageQueue:
        from azure.core.exceptions import AzureError
        from azure.storage.queue import ExponentialRetry, QueueClient

        from resources.azure_bucket import AzureBucket

        assert conn.events is not None
        queue_conn = conn.queue_connection()
        bucket = AzureBucket.open(queue_conn, queue_conn.provider_settings())
        client = QueueClient(
            account_url=queue_account_url(conn, bucket.account_url),
            queue_name=conn.events.queue,
            credential=bucket.sdk_credential(),
            connection_timeout=5,
            read_timeout=bucket.timeout_s,
            # The SDK's default backoff starts at 15 s: an unreachable queue would hold up the whole sensor tick.
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
        )
        return cls(conn.name, client, (AzureError,))

    def receive(self, max_n: int, deadline: float | None = None) -> list[ReceivedMessage]:
        out: list[ReceivedMessage] = []
        try:
            pages = self.client.receive_messages(
                messages_per_page=min(STORAGE_QUEUE_PER_CALL, max_n),
                visibility_timeout=VISIBILITY_TIMEOUT_S,
                max_messages=max_n,
            ).by_page()
            for page in pages:  # whole pages: what a call received is hidden already, so it is all handed over
                out.extend(storage_queue_message(m) for m in page)
                if _past(deadline):
                    break
        except self.errors as exc:
            if not out:
                raise QueueError(
                    f"connection '{self.connection}': Storage Queue receive failed: {scrub(str(exc))}"
                ) from None
        return out

    def ack(self, tokens: list[str]) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        deleted = 0
        for token in tokens:
            message_id, _, pop_receipt = token.partition(":")
            try:
                self.client.delete_message(message_id, pop_receipt)
                deleted += 1
            except ResourceNotFoundError:
                continue  # gone already, or received again since (a new pop receipt): it comes back, harmlessly
            except self.errors as exc:
                raise QueueError(
                    f"connection '{self.connection}': Storage Queue delete failed: {scrub(str(exc))}"
                ) from None
        return deleted


# --- GCS: Cloud Storage notifications in a Pub/Sub subscription ------------------------------------------------

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"


def pubsub_message(received: Any) -> ReceivedMessage:
    """One entry of a Pub/Sub PullResponse (`received_messages[i]`): the event is in the message's attributes."""
    message = received.message
    attributes = {str(k): str(v) for k, v in message.attributes.items()}
    return _read(message.message_id, received.ack_id, lambda: parse_pubsub_message(attributes, bytes(message.data)))


class PubSubSubscription:
    """A Pub/Sub subscription to the topic a GCS bucket's notification configuration publishes to."""

    def __init__(self, connection: str, client: Any, subscription: str, errors: tuple[type[Exception], ...]) -> None:
        self.connection, self.client, self.subscription, self.errors = connection, client, subscription, errors

    @classmethod
    def open(cls, conn: Connection) -> PubSubSubscription:
        """The subscription with the connection's credentials, scoped for Pub/Sub; `events.endpoint` overrides the
        API endpoint (a regional or private endpoint)."""
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import pubsub_v1

        from resources.gcs_bucket import GCSBucket

        assert conn.events is not None
        queue_conn = conn.queue_connection()
        bucket = GCSBucket.open(queue_conn, queue_conn.provider_settings())
        if bucket.auth_mode == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            credentials: Any = AnonymousCredentials()
        elif bucket.auth_mode == "service_account":
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(bucket.key_file, scopes=[PUBSUB_SCOPE])
        else:
            import google.auth

            credentials, _ = google.auth.default(scopes=[PUBSUB_SCOPE])
        options = {"api_endpoint": conn.events.endpoint} if conn.events.endpoint else None
        client = pubsub_v1.SubscriberClient(credentials=credentials, client_options=options)
        return cls(conn.name, client, conn.events.queue, (GoogleAPIError, GoogleAuthError))

    def receive(self, max_n: int, deadline: float | None = None) -> list[ReceivedMessage]:
        from google.api_core.exceptions import DeadlineExceeded

        out: list[ReceivedMessage] = []
        while len(out) < max_n and not (out and _past(deadline)):
            try:
                answer = self.client.pull(
                    subscription=self.subscription,
                    max_messages=min(PUBSUB_PER_CALL, max_n - len(out)),
                    timeout=PULL_TIMEOUT_S,
                )
            except DeadlineExceeded:
                break  # nothing arrived in time: an empty pull
            except self.errors as exc:
                if out:
                    break
                raise QueueError(f"connection '{self.connection}': Pub/Sub pull failed: {scrub(str(exc))}") from None
            received = list(answer.received_messages)
            if not received:
                break
            # The subscription's own ack deadline may be as short as 10 s: extend it past the next tick. If that
            # fails, the messages come back sooner, with the same ids: the same batch, the same run key.
            with suppress(*self.errors):
                self.client.modify_ack_deadline(
                    subscription=self.subscription,
                    ack_ids=[r.ack_id for r in received],
                    ack_deadline_seconds=VISIBILITY_TIMEOUT_S,
                )
            out.extend(pubsub_message(r) for r in received)
        return out

    def ack(self, tokens: list[str]) -> int:
        for chunk in _chunks(tokens, PUBSUB_PER_CALL):
            try:
                self.client.acknowledge(subscription=self.subscription, ack_ids=chunk)
            except self.errors as exc:
                raise QueueError(
                    f"connection '{self.connection}': Pub/Sub acknowledge failed: {scrub(str(exc))}"
                ) from None
        return len(tokens)


_READERS: dict[str, Callable[[Connection], EventQueueReader]] = {
    "s3": SQSQueue.open,
    "azure": StorageQueue.open,
    "gcs": PubSubSubscription.open,
}


def open_queue(conn: Connection) -> EventQueueReader:
    """The reader of `conn`'s event queue. Raises QueueError (scrubbed, naming the connection) when it cannot be
    opened: an unset credential variable, an endpoint that cannot be derived, a client that cannot be built."""
    if conn.events is None:
        raise QueueError(f"connection '{conn.name}' has no `events` queue in the catalog")
    try:
        return _READERS[conn.provider](conn)
    except ConnectionMisconfigured as exc:
        raise QueueError(scrub(str(exc))) from None
    except Exception as exc:  # an SDK's own error while building its client (credentials, endpoint)
        raise QueueError(
            f"connection '{conn.name}': the {conn.provider} event queue cannot be opened: {scrub(str(exc))}"
        ) from None
