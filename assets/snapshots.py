"""The contract between the steps of a sync: what each hands to the next, and where it lives in the state store.

Every step of a sync may run in another process, pod or machine than the one before it (a per-step executor, a
re-execution from failure, the next day's sync), so the only way state passes is through the state store, under the
keys named here, and the only record of what a listing saw is `ListingState`, written and read here alone.

    snapshots/<connection>/listing.parquet     the media-eligible listing of the latest sync
                           changes.parquet     that listing diffed against the baseline (new/changed/.../deleted)
                           skipped.parquet     listed objects over the connection's quota (assets/quota.py)
                           probes.parquet      facts and verdicts of every current object
                           violations.parquet  the rule findings of those objects
                           moves.parquet       moves recognised by content after probing
                           thumbnails.parquet  embedded EXIF thumbnails of the objects with violations (report)
                           state.json          ListingState: what the listing saw, and which run wrote it
                           baseline.parquet    the listing of the last sync that reached the index
                           baseline.json       BaselineState: that listing's fingerprint, for the change sensor
                           checkpoint/part-*.parquet   probe results of a run still going (or killed)
                           manifest.<run>.jsonl        a manifest staged until its run's sync is in the index
                                                       (empty when the run accepted no image: publish none)
                           video-manifests.<run>.jsonl the run's video manifests, staged the same way (one line each)
                           bucket_manifests.json       BucketManifests: what was last written into the bucket
                           events/<batch>.json         EventBatch: the keys a delta sync run was asked to sync
    reports/<connection>/report.html           the visual report of the last sync (pipelines/report.py)
    manifests/<connection>/manifest.jsonl      the published CVAT manifest (absent while no image is accepted)
    manifests/<connection>/videos/<key>.jsonl  the published CVAT video manifest of each accepted video, named after
                                               its key relative to the prefix (`videos/<clip.mp4>.jsonl`)
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from dagster import Failure
from pydantic import BaseModel, Field

from assets.quota import QuotaState
from resources.state import StateStore


class SnapshotKeys:
    """The state-store keys of one connection."""

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.prefix = f"snapshots/{connection}/"
        self.listing = self.prefix + "listing.parquet"
        self.changes = self.prefix + "changes.parquet"
        self.skipped = self.prefix + "skipped.parquet"
        self.probes = self.prefix + "probes.parquet"
        self.violations = self.prefix + "violations.parquet"
        self.moves = self.prefix + "moves.parquet"
        self.thumbnails = self.prefix + "thumbnails.parquet"
        self.report = f"reports/{connection}/report.html"
        self.state = self.prefix + "state.json"
        self.baseline = self.prefix + "baseline.parquet"
        self.baseline_state = self.prefix + "baseline.json"
        self.checkpoint_prefix = self.prefix + "checkpoint/"
        self.manifest_prefix = f"manifests/{connection}/"
        self.manifest = self.manifest_prefix + "manifest.jsonl"
        self.video_manifest_prefix = self.manifest_prefix + "videos/"
        self.bucket_manifests = self.prefix + "bucket_manifests.json"
        self.event_prefix = self.prefix + "events/"

    def event_batch(self, batch_id: str) -> str:
        return f"{self.event_prefix}{batch_id}.json"

    def staged_manifest(self, run_id: str) -> str:
        return f"{self.prefix}manifest.{run_id}.jsonl"

    def staged_video_manifests(self, run_id: str) -> str:
        return f"{self.prefix}video-manifests.{run_id}.jsonl"

    def video_manifest(self, relative_key: str) -> str:
        """Where the video manifest of the video at `relative_key` (relative to the prefix) is published.

        CVAT takes any `.jsonl` file selected beside a video as its manifest, one manifest per video task; naming it
        after the whole key, extension included, tells a person which video it describes and can never give two
        videos one name.
        """
        return f"{self.video_manifest_prefix}{relative_key}.jsonl"

    def staged_run(self, key: str) -> str | None:
        """The run id of a staged manifest key (image or video manifests), or None when `key` is neither."""
        name = key.removeprefix(self.prefix)
        if "/" in name or not name.endswith(".jsonl"):
            return None
        for stem in ("manifest.", "video-manifests."):
            if name.startswith(stem):
                return name.removeprefix(stem).removesuffix(".jsonl")
        return None


class ListingState(BaseModel):
    """What `object_listing` saw in run `run_id`: every later step and check of the sync reads this, not the bucket."""

    run_id: str
    started_at: datetime
    allow_collapse: bool = False
    sync_kind: Literal["full", "delta"] = Field(
        "full", description="full: the bucket was listed; delta: the baseline plus one HEAD per event key"
    )
    event_keys: int = Field(0, description="distinct keys the delta sync's event batch named (0 for a full sync)")
    covered_batches: list[str] = Field(
        default_factory=list,
        description="event batches this sync's listing covers: removed from the state store once it is published",
    )
    listed: int
    new: int
    changed: int
    unchanged: int
    deleted: int
    moved: int
    baseline_listed: int
    bytes: int = 0
    folder_markers: int = 0
    filtered_out: int = 0
    extensions: dict[str, int] = Field(default_factory=dict)
    gaps: list[str] = Field(default_factory=list, description="folders the provider could not read")
    kept_unread: int = Field(0, description="objects under those folders kept at their last known state")
    fingerprint: tuple[int, int] = Field((0, 0), description="(count, digest) of the listing, see assets/listing")
    quota: QuotaState = Field(default_factory=QuotaState, description="what the quota admitted and skipped")

    def save(self, store: StateStore, connection: str) -> None:
        store.write_bytes(SnapshotKeys(connection).state, self.model_dump_json(indent=2).encode())

    @classmethod
    def load(cls, store: StateStore, connection: str) -> ListingState | None:
        raw = store.read_bytes(SnapshotKeys(connection).state)
        return None if raw is None else cls.model_validate_json(raw)

    @classmethod
    def require(cls, store: StateStore, connection: str) -> ListingState:
        """The state a later step of the sync needs; its absence means the listing step never ran here."""
        state = cls.load(store, connection)
        if state is None:
            raise Failure(
                f"connection '{connection}': no listing in the state store at {store.location}; "
                "materialize object_listing first (or point BUCKET_SYNC_STATE at the store the listing used)"
            )
        return state


class BaselineState(BaseModel):
    """The run whose listing is the baseline, and that listing's fingerprint (so a sensor need not download it)."""

    run_id: str
    fingerprint: tuple[int, int]

    @classmethod
    def load(cls, store: StateStore, connection: str) -> BaselineState | None:
        raw = store.read_bytes(SnapshotKeys(connection).baseline_state)
        return None if raw is None else cls.model_validate_json(raw)

    def save(self, store: StateStore, connection: str) -> None:
        store.write_bytes(SnapshotKeys(connection).baseline_state, self.model_dump_json().encode())


class BatchedEvent(BaseModel):
    """One bucket event of a batch: the key as the bucket names it (prefix included) and what the event said."""

    key: str
    kind: Literal["created", "deleted"]
    time: str | None = None


class EventBatch(BaseModel):
    """The bucket events one delta sync run covers, written by the `bucket_events` sensor before it requests the run.

    The run may start on another machine than the sensor's, so the keys travel through the state store, and the
    run's config carries only `batch_id`. The id is derived from the queue's message ids, so a batch received twice
    (the sensor died before acknowledging it) gets the same id, the same run key, and starts no second run.
    """

    connection: str
    batch_id: str
    received_at: datetime
    events: list[BatchedEvent]

    @staticmethod
    def id_for(message_ids: list[str]) -> str:
        return hashlib.sha256("\n".join(sorted(message_ids)).encode()).hexdigest()[:16]

    @property
    def keys(self) -> list[str]:
        """Each key named by the batch, once, in key order."""
        return sorted({e.key for e in self.events})

    def save(self, store: StateStore) -> None:
        store.write_bytes(SnapshotKeys(self.connection).event_batch(self.batch_id), self.model_dump_json().encode())

    @classmethod
    def pending(cls, store: StateStore, connection: str) -> list[EventBatch]:
        """Every batch stored for `connection` that no published sync has covered yet, oldest first.

        A delta run syncs all of them, not only the batch it was requested for: a delta run that failed leaves its
        batch here, and the next one picks its keys up instead of leaving them to the next full sync.
        """
        batches = []
        for key in store.list(SnapshotKeys(connection).event_prefix):
            raw = store.read_bytes(key)
            if raw is not None and key.endswith(".json"):
                batches.append(cls.model_validate_json(raw))
        return sorted(batches, key=lambda b: (b.received_at, b.batch_id))

    @classmethod
    def merged(cls, connection: str, batch_id: str, batches: list[EventBatch]) -> EventBatch:
        """The events of `batches` as one batch named `batch_id`: what one delta run reads the current state of."""
        return cls(
            connection=connection,
            batch_id=batch_id,
            received_at=max((b.received_at for b in batches), default=datetime.now().astimezone()),
            events=[e for b in batches for e in b.events],
        )

    @classmethod
    def require(cls, store: StateStore, connection: str, batch_id: str) -> EventBatch:
        raw = store.read_bytes(SnapshotKeys(connection).event_batch(batch_id))
        if raw is None:
            raise Failure(
                f"connection '{connection}': event batch '{batch_id}' is not in the state store at {store.location}; "
                "the sensor writes it before requesting the run, so this run was started by hand with a made-up "
                "batch id or against another state store: run a full sync instead (`bucket-sync sync NAME`)"
            )
        return cls.model_validate_json(raw)
