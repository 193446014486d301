"""The event sensor's acknowledgement protocol, tick by tick, over an in-memory queue that behaves as the clouds' do:
a received message is hidden until acknowledged or until its visibility timeout passes, and each delivery has its own
token. The state store is a real folder store; no Dagster instance is needed (`run_requested` is the instance's
answer)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assets.snapshots import EventBatch
from pipelines.event_sensor import (
    Drained,
    PendingBatch,
    covers,
    delta_run_config,
    drain,
    dump_cursor,
    event_run_key,
    load_cursor,
)
from resources.catalog import Connection
from resources.event_messages import ObjectEvent
from resources.event_queues import VISIBILITY_TIMEOUT_S, QueueError, ReceivedMessage
from resources.state import StateStore

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class MemoryQueue:
    """Messages by id; `hidden` holds the ids delivered and not yet acknowledged, `tokens` the live token of each."""

    messages: dict[str, tuple[tuple[ObjectEvent, ...], str | None]] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    tokens: dict[str, str] = field(default_factory=dict)
    deliveries: itertools.count[int] = field(default_factory=itertools.count)
    down: bool = False

    def put(self, message_id: str, *events: ObjectEvent, error: str | None = None) -> None:
        self.messages[message_id] = (events, error)

    def expire(self) -> None:
        """The visibility timeout passes: every hidden message is offered again."""
        self.hidden.clear()

    def receive(self, max_n: int, deadline: float | None = None) -> list[ReceivedMessage]:
        if self.down:
            raise QueueError("connection 'photos': queue unreachable")
        out = []
        for message_id, (events, error) in self.messages.items():
            if message_id in self.hidden or len(out) == max_n:
                continue
            token = f"{message_id}#{next(self.deliveries)}"
            self.hidden.add(message_id)
            self.tokens[message_id] = token
            out.append(ReceivedMessage(message_id, token, events, error))
        return out

    def ack(self, tokens: list[str]) -> int:
        if self.down:
            raise QueueError("connection 'photos': queue unreachable")
        done = 0
        for token in tokens:
            message_id = token.partition("#")[0]
            if self.tokens.get(message_id) == token:  # a stale token (redelivered since) deletes nothing
                del self.messages[message_id]
                del self.tokens[message_id]
                self.hidden.discard(message_id)
                done += 1
        return done


def photos(**fields: object) -> Connection:
    values = {"name": "photos", "provider": "s3", "bucket": "media", "prefix": "raw/", **fields}
    values.setdefault("events", {"queue": "https://sqs.eu-west-1.amazonaws.com/123456789012/q", "max_messages": 100})
    return Connection.model_validate(values)


def created(key: str, bucket: str = "media") -> ObjectEvent:
    return ObjectEvent(bucket, key, "created", "2026-11-30T12:00:00Z")


def deleted(key: str) -> ObjectEvent:
    return ObjectEvent("media", key, "deleted", "2026-11-30T12:00:01Z")


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(url=str(tmp_path / "state"))


class Instance:
    """The run keys the instance holds: what `run_requested` reads."""

    def __init__(self) -> None:
        self.run_keys: set[str] = set()

    def requested(self, run_key: str) -> bool:
        return run_key in self.run_keys


def tick(
    queue: MemoryQueue, store: StateStore, instance: Instance, pending: list[PendingBatch], now: datetime = T0
) -> Drained:
    return drain(photos(), queue, store, instance.requested, pending, now)


def test_first_tick_saves_the_batch_then_requests_one_delta_run_and_acknowledges_nothing(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    queue.put("m1", created("raw/a.png"), created("raw/b.png"))
    queue.put("m2", deleted("raw/b.png"))
    out = tick(queue, store, instance, [])
    assert out.request is not None
    (pending,) = out.pending
    assert out.request.run_key == event_run_key("photos", pending.batch_id) == f"photos:events:{pending.batch_id}"
    assert pending.batch_id == EventBatch.id_for(["m1", "m2"])
    assert out.request.partition_key == "photos"
    assert out.request.run_config == delta_run_config(pending.batch_id)
    assert out.request.tags == {"bucket-sync/trigger": "bucket_events", "bucket-sync/sync": "delta"}
    batch = EventBatch.require(store, "photos", pending.batch_id)
    assert batch.keys == ["raw/a.png", "raw/b.png"]
    assert [e.kind for e in batch.events if e.key == "raw/b.png"] == ["created", "deleted"]
    assert set(queue.messages) == {"m1", "m2"}, "nothing is deleted before the run exists"


def test_acknowledged_only_on_the_tick_after_the_run_exists(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    queue.put("m1", created("raw/a.png"))
    first = tick(queue, store, instance, [])
    waiting = tick(queue, store, instance, first.pending)
    assert waiting.request is None and waiting.pending == first.pending and "m1" in queue.messages
    assert first.request is not None
    instance.run_keys.add(first.request.run_key)
    done = tick(queue, store, instance, waiting.pending)
    assert done.acked == 1 and done.pending == [] and queue.messages == {}


def test_a_redelivered_batch_gets_the_same_run_key_and_the_new_tokens(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    queue.put("m1", created("raw/a.png"))
    queue.put("m2", created("raw/b.png"))
    first = tick(queue, store, instance, [])
    queue.expire()  # the acknowledgement did not come in time
    again = tick(queue, store, instance, first.pending, T0 + timedelta(seconds=30))
    assert again.request is not None and first.request is not None
    assert again.request.run_key == first.request.run_key
    (pending,) = again.pending
    assert pending.tokens != first.pending[0].tokens, "the old tokens no longer delete anything"
    instance.run_keys.add(again.request.run_key)
    assert tick(queue, store, instance, again.pending).acked == 2 and queue.messages == {}


def test_messages_nothing_covers_are_acknowledged_at_once_and_poison_is_noted(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    queue.put("other-bucket", created("raw/a.png", bucket="elsewhere"))
    queue.put("outside-prefix", created("cooked/a.png"))
    queue.put("test-event")  # s3:TestEvent: a readable message with no event
    queue.put("poison", error="SQS message body is not JSON")
    out = tick(queue, store, instance, [])
    assert out.request is None and out.pending == []
    assert queue.messages == {}
    assert any("dropped unreadable message poison: SQS message body is not JSON" in note for note in out.notes)


def test_a_mixed_receive_requests_for_the_covered_and_acknowledges_the_rest(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    queue.put("mine", created("raw/a.png"))
    queue.put("poison", error="not an event")
    out = tick(queue, store, instance, [])
    assert out.request is not None
    assert out.pending[0].batch_id == EventBatch.id_for(["mine"])
    assert set(queue.messages) == {"mine"}


def test_max_messages_bounds_one_tick(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    for i in range(5):
        queue.put(f"m{i}", created(f"raw/{i}.png"))
    out = drain(photos(events={"queue": "https://sqs.x.amazonaws.com/123456789012/q", "max_messages": 2}),
                queue, store, instance.requested, [], T0)  # fmt: skip
    assert out.request is not None
    assert EventBatch.require(store, "photos", out.pending[0].batch_id).keys == ["raw/0.png", "raw/1.png"]
    assert len(queue.hidden) == 2


def test_a_queue_that_fails_keeps_what_is_pending_and_says_so(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    queue.put("m1", created("raw/a.png"))
    first = tick(queue, store, instance, [])
    assert first.request is not None
    instance.run_keys.add(first.request.run_key)
    queue.down = True
    out = tick(queue, store, instance, first.pending)
    assert out.request is None and out.pending == first.pending
    assert any("photos: event queue failed, will retry next tick" in note for note in out.notes)
    queue.down = False
    assert tick(queue, store, instance, out.pending).acked == 1


def test_a_pending_batch_that_got_no_run_is_let_go_after_the_visibility_timeout(store: StateStore) -> None:
    queue, instance = MemoryQueue(), Instance()
    queue.put("m1", created("raw/a.png"))
    first = tick(queue, store, instance, [])
    later = T0 + timedelta(seconds=VISIBILITY_TIMEOUT_S + 1)
    queue.expire()
    out = tick(queue, store, instance, first.pending, later)
    assert any("got no run" in note for note in out.notes)
    assert out.request is not None, "its messages, received again, are requested again"
    assert [b.received_at for b in out.pending] == [later]


def test_covers_what_a_sync_of_the_connection_indexes() -> None:
    conn = photos(exclude=["*.tmp"], publish_manifest=True)
    assert covers(conn, created("raw/a/b.png"))
    assert not covers(conn, created("raw/a/b.png", bucket="other"))
    assert not covers(conn, created("rawer/a.png"))
    assert not covers(conn, created("raw/folder/"))
    assert not covers(conn, created("raw/upload.tmp"))
    assert not covers(conn, created("raw/manifest.jsonl")), "its own published manifest would trigger itself"
    assert covers(photos(), created("raw/manifest.jsonl"))


def test_cursor_round_trips_and_an_unreadable_one_starts_afresh() -> None:
    pending = PendingBatch(batch_id="abc", tokens=["t1", "t2"], received_at=T0)
    text = dump_cursor({"photos": [pending], "idle": []})
    assert load_cursor(text) == {"photos": [pending]}
    assert load_cursor(None) == {} and load_cursor('{"photos": 3}') == {}
