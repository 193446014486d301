"""The `bucket_events` sensor: drains each connection's bucket-event queue and requests a delta sync of the keys named.

Per connection with `events` in the catalog, each tick:

1. acknowledges the messages of the batches it requested a run for on an earlier tick, once the instance holds a run
   with that batch's run key (Dagster creates the run after the tick that returned its request, so this is the next
   tick). Until then the messages stay in the queue, hidden (resources/event_queues.VISIBILITY_TIMEOUT_S): a sensor
   that dies in between loses nothing, because the queue offers them again.
2. receives up to `events.max_messages` messages, keeps the events of this connection's bucket under its prefix,
   saves them as an EventBatch in the state store (the run may start on another machine), and only then returns the
   RunRequest. The batch id is derived from the message ids, so a batch redelivered before its acknowledgement gets
   the same run key, and Dagster starts no second run for it.

Messages that are not bucket events, or whose events this connection does not sync, are acknowledged at once: no run
covers them, and a poison message must not block the queue. Pending batches (ids and acknowledgement tokens) live in
the sensor's cursor, which is in the instance's storage, not on a local disk. A queue that cannot be reached is a log
line naming the connection; the other connections proceed. Events can be lost, so a scheduled full sync reconciles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import RUN_KEY_TAG
from pydantic import BaseModel, TypeAdapter, ValidationError

from assets.partitions import connections_partitions
from assets.snapshots import BatchedEvent, EventBatch
from pipelines.jobs import sync_job
from resources.catalog import CatalogError, Connection
from resources.catalog_resource import CatalogResource
from resources.event_messages import ObjectEvent
from resources.event_queues import VISIBILITY_TIMEOUT_S, EventQueueReader, QueueError, ReceivedMessage, open_queue
from resources.secrets import scrub
from resources.state import StateStore

#: How long one tick may spend receiving, over all connections: Dagster's sensor timeout is 60 s, and acknowledging,
#: saving the batches and the daemon's own work come on top. Each connection still gets one receive call.
RECEIVE_BUDGET_S = 30.0
#: Tags of every run this sensor requests: what started it, and that it is a delta sync (the index records which).
EVENT_RUN_TAGS = {"bucket-sync/trigger": "bucket_events", "bucket-sync/sync": "delta"}


def event_run_key(connection: str, batch_id: str) -> str:
    """The run key of the delta sync covering batch `batch_id`: the same batch can never start two runs."""
    return f"{connection}:events:{batch_id}"


def delta_run_config(batch_id: str) -> dict[str, Any]:
    """The run config that makes a sync a delta sync of one event batch: `object_listing` reads the batch's keys from
    the state store (assets/snapshots.EventBatch) instead of listing the bucket."""
    return {"ops": {"object_listing": {"config": {"event_batch": batch_id}}}}


def covers(conn: Connection, event: ObjectEvent) -> bool:
    """Whether a sync of `conn` would index the event's key: its bucket, under its prefix, a media key (not a folder
    marker, not a manifest the connection publishes into the bucket itself), passing its include/exclude globs.

    Dropping the connection's own published manifests matters: writing them raises events too, and a delta sync for
    each would publish again, for ever.
    """
    if event.bucket != conn.bucket or not event.key.startswith(conn.prefix):
        return False
    relative = conn.relative_key(event.key)
    if not relative or relative.endswith("/"):
        return False
    if conn.publish_manifest and event.key.endswith(".jsonl"):
        return False
    return conn.key_filter(relative)


class PendingBatch(BaseModel):
    """A batch whose run was requested and whose messages wait for acknowledgement: kept in the sensor's cursor."""

    batch_id: str
    tokens: list[str]
    received_at: datetime


#: The cursor: each connection's pending batches.
CURSOR = TypeAdapter(dict[str, list[PendingBatch]])


def load_cursor(text: str | None) -> dict[str, list[PendingBatch]]:
    """The cursor as written by `dump_cursor`; an unreadable one (an older format) starts afresh, which costs only
    redeliveries: the messages it held come back once their visibility timeout passes."""
    if not text:
        return {}
    try:
        return CURSOR.validate_json(text)
    except ValidationError:
        return {}


def dump_cursor(cursor: dict[str, list[PendingBatch]]) -> str:
    return CURSOR.dump_json({name: batches for name, batches in cursor.items() if batches}).decode()


@dataclass
class Drained:
    """What one tick did for one connection: the run to request (if any), the batches still pending, and notes."""

    request: RunRequest | None = None
    pending: list[PendingBatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    acked: int = 0


def _acknowledge(queue: EventQueueReader, tokens: list[str]) -> int:
    return queue.ack(tokens) if tokens else 0


def drain(
    conn: Connection,
    queue: EventQueueReader,
    store: StateStore,
    run_requested: Callable[[str], bool],
    pending: list[PendingBatch],
    now: datetime,
    deadline: float | None = None,
) -> Drained:
    """One tick for one connection, with no Dagster context: acknowledge, receive, save the batch, make the request.

    `run_requested(run_key)` says whether the instance holds a run with that run key; `deadline` (time.monotonic())
    ends the receiving early, so a slow queue cannot push the tick past the sensor timeout. Raises nothing for a
    queue that fails: that becomes a note, and what is pending stays pending for the next tick.
    """
    assert conn.events is not None
    out = Drained()
    ready = [b for b in pending if run_requested(event_run_key(conn.name, b.batch_id))]
    expired = now - timedelta(seconds=VISIBILITY_TIMEOUT_S)
    for batch in pending:
        if any(b.batch_id == batch.batch_id for b in ready):
            continue
        if batch.received_at < expired:
            # No run came of it (the tick's result was lost): the queue offers its messages again by now.
            out.notes.append(f"{conn.name}: batch {batch.batch_id} got no run; its messages will be received again")
        else:
            out.pending.append(batch)
    try:
        out.acked = _acknowledge(queue, [t for b in ready for t in b.tokens])
    except QueueError as exc:
        out.pending = [*ready, *out.pending]  # acknowledged on a later tick, once the queue answers
        out.notes.append(f"{conn.name}: event queue failed, will retry next tick: {scrub(str(exc))}")
        return out
    if ready:
        out.notes.append(f"{conn.name}: acknowledged {out.acked} message(s) of {len(ready)} requested batch(es)")
    try:
        messages = queue.receive(conn.events.max_messages, deadline)
    except QueueError as exc:
        out.notes.append(f"{conn.name}: event queue failed, will retry next tick: {scrub(str(exc))}")
        return out

    covered: list[ReceivedMessage] = []
    needless: list[str] = []
    events: list[BatchedEvent] = []
    for message in messages:
        if message.error:
            out.notes.append(f"{conn.name}: dropped unreadable message {message.message_id}: {message.error}")
        mine = [BatchedEvent(key=e.key, kind=e.kind, time=e.time) for e in message.events if covers(conn, e)]
        if mine:
            covered.append(message)
            events.extend(mine)
        else:
            needless.append(message.ack_token)
    if covered:
        batch = EventBatch(
            connection=conn.name,
            batch_id=EventBatch.id_for([m.message_id for m in covered]),
            received_at=now,
            events=sorted(events, key=lambda e: (e.key, e.time or "", e.kind)),
        )
        try:
            batch.save(store)  # before the request: the run reads it, possibly on another machine
        except Exception as exc:
            out.notes.append(
                f"{conn.name}: could not save event batch to the state store, its messages come back in "
                f"{VISIBILITY_TIMEOUT_S} s: {scrub(str(exc))}"
            )
        else:
            out.pending = [b for b in out.pending if b.batch_id != batch.batch_id]
            out.pending.append(
                PendingBatch(batch_id=batch.batch_id, tokens=[m.ack_token for m in covered], received_at=now)
            )
            out.request = RunRequest(
                run_key=event_run_key(conn.name, batch.batch_id),
                partition_key=conn.name,
                run_config=delta_run_config(batch.batch_id),
                tags=EVENT_RUN_TAGS,
            )
            out.notes.append(
                f"{conn.name}: {len(batch.keys)} changed key(s) from {len(covered)} message(s), delta sync requested "
                f"(batch {batch.batch_id})"
            )
    if needless:
        try:
            _acknowledge(queue, needless)
        except QueueError as exc:  # they come back after the visibility timeout and are dropped again
            out.notes.append(f"{conn.name}: {scrub(str(exc))}")
        out.notes.append(f"{conn.name}: acknowledged {len(needless)} message(s) with no event for this connection")
    if not messages and not ready:
        out.notes.append(f"{conn.name}: no new events")
    return out


def run_requested(instance: DagsterInstance, run_key: str) -> bool:
    """Whether the instance holds a run with this run key (in any status: a finished run covered the batch too)."""
    return instance.get_runs_count(RunsFilter(tags={RUN_KEY_TAG: run_key})) > 0


@sensor(
    name="bucket_events",
    job=sync_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "For connections with `events`: drains the bucket-event queue (SQS, Pub/Sub, Storage Queue) in bounded "
        "batches and requests a delta sync of just the keys named. Messages are acknowledged only once the run "
        "exists, and the run key comes from the message ids, so the same events never start two runs."
    ),
)
def bucket_events(
    context: SensorEvaluationContext, catalog: CatalogResource, state_store: StateStore
) -> SensorResult | SkipReason:
    try:
        fed = [c for c in catalog.load().connections.values() if c.events is not None]
    except CatalogError as exc:
        return SkipReason(f"catalog is invalid:\n{exc}")
    if not fed:
        return SkipReason("no connection has an `events` queue")
    cursor = load_cursor(context.cursor)
    partitions = set(context.instance.get_dynamic_partitions(connections_partitions.name))
    now = datetime.now(UTC)
    deadline = time.monotonic() + RECEIVE_BUDGET_S
    requests: list[RunRequest] = []
    notes: list[str] = []
    next_cursor: dict[str, list[PendingBatch]] = {}
    for conn in fed:
        pending = cursor.get(conn.name, [])
        if conn.name not in partitions:
            next_cursor[conn.name] = pending
            notes.append(f"{conn.name}: not a partition yet (the connection_registry sensor adds it); queue left")
            continue
        try:
            queue = open_queue(conn)
        except QueueError as exc:
            next_cursor[conn.name] = pending
            notes.append(f"{conn.name}: event queue cannot be opened, will retry next tick: {exc}")
            continue
        drained = drain(
            conn, queue, state_store, lambda key: run_requested(context.instance, key), pending, now, deadline
        )
        next_cursor[conn.name] = drained.pending
        notes.extend(drained.notes)
        if drained.request is not None:
            requests.append(drained.request)
    context.update_cursor(dump_cursor(next_cursor))
    for note in notes:
        context.log.info(note)
    if not requests:
        return SkipReason("; ".join(notes) or "nothing to do")
    return SensorResult(run_requests=requests)
