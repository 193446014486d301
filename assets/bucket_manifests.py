"""Manifests written back into the bucket for a connection that opts in (`publish_manifest`): the one write
bucket-sync ever makes.

CVAT looks for `manifest.jsonl` in the cloud storage, with names relative to the manifest's folder, so every manifest
the sync published in the state store under `manifests/<connection>/` goes to the same path under the connection's
prefix: the image manifest to `<prefix>manifest.jsonl`, and any other manifest the manifest step publishes there (a
video's) to its own path below the prefix. Whatever the manifest step published there is mirrored, nothing else.

Each object is written whole in one PUT, conditional on the version bucket-sync wrote last (or on there being none),
so two writers cannot interleave and a manifest someone else put there is never overwritten. Nothing is ever deleted.
A manifest whose content hash equals the one written last is not written again, so an unchanged sync writes nothing;
the hashes and versions are kept in the state store (`BucketManifests`), written and read only here.

It runs after the index commit (`media_index`, after `publish`), so the bucket only gets a manifest that matches the
index. A refused write fails that step with what to do; the index stays committed, and the next sync writes whatever
is still unwritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

from dagster import Failure
from pydantic import BaseModel, Field

from assets.snapshots import SnapshotKeys
from media.cvat import manifest_has_items
from resources.bucket import Bucket, BucketError, ObjectVersion, WriteConflict
from resources.catalog import Connection
from resources.providers import open_bucket
from resources.state import StateStore


class Log(Protocol):
    def info(self, msg: str) -> None: ...

    def warning(self, msg: str) -> None: ...


class WrittenManifest(BaseModel):
    """One manifest as bucket-sync last wrote it: its content hash, and the version the provider gave the write."""

    sha256: str
    etag: str | None = None
    version: str | None = None


class BucketManifests(BaseModel):
    """Every manifest written into one bucket location, by key. `where` names that location: when the catalog entry
    is pointed elsewhere, what was written to the old place says nothing about the new one."""

    where: str
    written: dict[str, WrittenManifest] = Field(default_factory=dict)

    @classmethod
    def load(cls, store: StateStore, conn: Connection) -> BucketManifests:
        raw = store.read_bytes(SnapshotKeys(conn.name).bucket_manifests)
        record = None if raw is None else cls.model_validate_json(raw)
        where = location(conn, "")
        return record if record is not None and record.where == where else cls(where=where)

    def save(self, store: StateStore, conn: Connection) -> None:
        store.write_bytes(SnapshotKeys(conn.name).bucket_manifests, self.model_dump_json(indent=2).encode())


@dataclass
class Outcome:
    """What one publishing pass did, by bucket key."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Written on an earlier sync and no longer published (no image accepted now): left in the bucket as it was.
    left_as_was: list[str] = field(default_factory=list)


def location(conn: Connection, key: str) -> str:
    """Where `key` of the connection's bucket is, as a person would type it (never with a credential)."""
    scheme = {"s3": "s3://", "gcs": "gs://", "azure": "azure container "}.get(conn.provider)
    if scheme is None:
        return f"{conn.root}/{key}" if key else str(conn.root)
    return f"{scheme}{conn.bucket}/{key}"


def manifest_objects(store: StateStore, conn: Connection) -> list[tuple[str, str]]:
    """(state-store key, bucket key) of every manifest the sync published: the path below `manifests/<connection>/`
    is the path below the prefix."""
    keys = SnapshotKeys(conn.name)
    return [
        (key, conn.prefix + key.removeprefix(keys.manifest_prefix))
        for key in store.list(keys.manifest_prefix)
        if key.endswith(".jsonl")
    ]


def publish_to_bucket(store: StateStore, conn: Connection, log: Log) -> Outcome:
    """Write every published manifest of `conn` that changed since it was last written into the bucket."""
    bucket = open_bucket(conn)
    record = BucketManifests.load(store, conn)
    outcome = Outcome()
    published = manifest_objects(store, conn)
    for state_key, bucket_key in published:
        data = store.read_bytes(state_key)
        if data is None or not manifest_has_items(data):  # withdrawn meanwhile, or one CVAT would refuse
            continue
        digest = hashlib.sha256(data).hexdigest()
        last = record.written.get(bucket_key)
        if last is not None and last.sha256 == digest:
            outcome.unchanged.append(bucket_key)
            continue
        version = _write(bucket, conn, bucket_key, data, digest, last)
        record.written[bucket_key] = WrittenManifest(sha256=digest, etag=version.etag, version=version.version)
        record.save(store, conn)  # after each write: a later failure must not forget the versions written
        outcome.written.append(bucket_key)
        log.info(f"'{conn.name}': manifest written to {location(conn, bucket_key)}")
    outcome.left_as_was = sorted(set(record.written) - {bucket_key for _, bucket_key in published})
    for bucket_key in outcome.left_as_was:
        log.warning(
            f"'{conn.name}': {location(conn, bucket_key)} still holds the manifest written by an earlier sync, "
            "and nothing accepted now belongs in it; bucket-sync never deletes, so CVAT sees that manifest until "
            "someone removes it"
        )
    return outcome


def _write(
    bucket: Bucket, conn: Connection, key: str, data: bytes, digest: str, last: WrittenManifest | None
) -> ObjectVersion:
    """One conditional write. A conflict is resolved only where no one else's work is at stake: the same content is
    already there (our own write, whose record was lost), or the object bucket-sync wrote was removed since."""
    expected = None if last is None else ObjectVersion(etag=last.etag, version=last.version)
    try:
        try:
            return bucket.put_manifest(key, data, expected)
        except WriteConflict:
            found = bucket.read_manifest(key)
            if found is not None and hashlib.sha256(found[0]).hexdigest() == digest:
                return found[1]
            if found is None and expected is not None:
                return bucket.put_manifest(key, data, None)
            raise
    except WriteConflict:
        before = "since bucket-sync last wrote it" if last else "before bucket-sync first published there"
        raise Failure(
            f"connection '{conn.name}': {location(conn, key)} holds a file that someone else wrote {before}; "
            "bucket-sync never overwrites another writer's file. Move it aside (or remove it) and sync again, or "
            "turn publish_manifest off for this connection. The index is up to date."
        ) from None
    except BucketError as exc:
        raise Failure(f"{exc}. The index is up to date; the next sync writes the manifest again.") from None
