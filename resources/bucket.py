"""The provider-neutral face of a bucket connection: what every provider can do, whatever the cloud.

Listing goes through each provider's own SDK, not obstore: obstore's listing parses every key as an object_store
`Path`, so one key with a `.`/`..` segment, an empty segment (`a//b`), or a control character aborts the whole listing,
and a leading `/` or a folder marker `dir/` comes back silently rewritten (`lead.jpg`, `dir`). A bucket listing must
return keys exactly as stored, and one odd key must never stop a sync. Listing is network-bound (one page of 1000 keys
per round trip), so the SDK's extra parsing cost does not show in wall time. Ranged reads, which are the bulk of the
work, go through obstore wherever it can address the key exactly (`obstore_addressable`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

import pyarrow as pa

from media.cors import CorsRule

#: The columns of one listing batch. `content_md5` is set where the provider states a content hash (S3 single-part
#: etag, GCS md5Hash, Azure Content-MD5); it drives move detection.
LISTING_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("etag", pa.string()),
        pa.field("last_modified", pa.timestamp("us", tz="UTC")),
        pa.field("version", pa.string()),
        pa.field("content_md5", pa.string()),
    ]
)


#: Request policy shared by every provider. A sync runs for hours against services that throttle and drop
#: connections: each request has a timeout, transient failures (connection reset, 429, 500, 502, 503, 504, timeouts
#: of reads) are retried with exponential backoff and jitter, and one read's retries are bounded in time so a stuck
#: object costs at most about `RETRY_WINDOW_S + REQUEST_TIMEOUT_S` before it becomes a "read failed" fact.
REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
MAX_RETRIES = 5
RETRY_INITIAL_BACKOFF_S = 0.2
RETRY_MAX_BACKOFF_S = 10.0
RETRY_WINDOW_S = 60.0
#: Listing is one sequence of pages that the whole sync waits on, so it may wait longer than one object read.
LISTING_RETRY_WINDOW_S = 120.0


def obstore_client_options(endpoint: str | None, timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, object]:
    """obstore ClientConfig: a timeout on every request and every connect; plain HTTP only for http:// endpoints."""
    return {
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "timeout": timedelta(seconds=timeout_s),
        "connect_timeout": timedelta(seconds=min(timeout_s, CONNECT_TIMEOUT_S)),
    }


def obstore_retry_config() -> dict[str, object]:
    """obstore RetryConfig: object_store retries 5xx, 429, dropped connections and read timeouts of GETs."""
    return {
        "max_retries": MAX_RETRIES,
        "retry_timeout": timedelta(seconds=RETRY_WINDOW_S),
        "backoff": {
            "init_backoff": timedelta(seconds=RETRY_INITIAL_BACKOFF_S),
            "max_backoff": timedelta(seconds=RETRY_MAX_BACKOFF_S),
            "base": 2,
        },
    }


class ConnectionStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    UNREACHABLE = "UNREACHABLE"
    MISCONFIGURED = "MISCONFIGURED"


@dataclass(frozen=True)
class ConnectionTest:
    """The outcome of a connection test: one status, what was seen, and what a person should do about it."""

    connection: str
    provider: str
    status: ConnectionStatus
    detail: str
    remedy: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ConnectionStatus.AVAILABLE


class BucketError(Exception):
    """A provider call failed in a way a person can act on. Messages never carry secrets."""


class ConnectionMisconfigured(BucketError):
    """The catalog entry or its environment cannot produce a working client (unset variable, bad name)."""


class ListingFailed(ConnectionMisconfigured):
    """The listing still failed after every retry (outage, throttling that did not let up, revoked access).

    A partial listing must never be diffed as deletions, so this fails the run, naming the connection. It subclasses
    ConnectionMisconfigured only so callers written before it (the CLI's preview) keep catching it.
    """


class ObjectGone(BucketError):
    """The object was listed but no longer exists when read (deleted between listing and probe)."""


class ObjectChanged(BucketError):
    """The object was overwritten between listing and probe: its etag no longer matches the listing."""


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object, as a conditional write names it: S3 and Azure match the etag, GCS the generation
    (`version`). Both are kept, whichever the provider uses."""

    etag: str | None = None
    version: str | None = None


class WriteConflict(BucketError):
    """A conditional write found another version than it was conditional on: someone else wrote or removed the key."""


class WriteDenied(BucketError):
    """The credentials may not write the key; the message names the permission that is missing."""


class CorsUnreadable(BucketError):
    """The credentials may not read the bucket's CORS configuration; the message names the permission to add.

    Not a failure of the connection: a sync needs no CORS permission, so the audit reports it instead of failing.
    """


class ObjectUnreadable(BucketError):
    """The object exists but can never be read as it stands: not a regular file, a name that is not valid UTF-8;
    retrying will not help.

    The message is a verdict on the object, recorded as its error fact (without the "read failed" prefix), so it is
    not re-read on every sync and a person knows what to fix.
    """


@runtime_checkable
class Bucket(Protocol):
    """What the assets need from a connection. Every provider resource implements it."""

    @property
    def connection_name(self) -> str: ...

    @property
    def provider(self) -> str: ...

    def iter_listing(self, prefix: str, page_size: int = 1000) -> Iterator[pa.RecordBatch]:
        """Stream every object under `prefix`, exactly as stored, as batches of LISTING_SCHEMA.

        Folder markers (keys ending in `/`) are included; the listing asset decides what is media.
        """
        ...

    def list_page(self, prefix: str, token: str | None, page_size: int = 1000) -> tuple[pa.RecordBatch, str | None]:
        """One page of the listing and the token that resumes after it (None at the end).

        Tokens are opaque and survive a process restart, so a sensor can page through a huge bucket across ticks.
        """
        ...

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Bytes [start, end) of `key`. With `etag`, raise ObjectChanged if the object no longer has it.

        Raises ObjectGone when the key no longer exists, ObjectUnreadable when it exists but can never be read.
        """
        ...

    def head(self, key: str) -> dict[str, object] | None:
        """The current state of `key` as one listing row (LISTING_SCHEMA's fields, filled exactly as the listing fills
        them), from one metadata request; None when there is no such object.

        A delta sync builds its listing from these rows and the baseline, so a row here must equal the row a full
        listing would give for the same object: otherwise every evented key would look changed to the next full
        sync. Raises BucketError (scrubbed) for any failure other than "not found": the caller keeps what it knew.
        """
        ...

    def listing_gaps(self) -> list[str]:
        """Prefixes (ending in "/") the last complete listing could not read, so their objects are missing from it.

        Call it after `iter_listing` is exhausted. The listing asset keeps what it last knew under these prefixes
        instead of tombstoning them. Cloud providers fail the whole listing instead of skipping part of it, so
        theirs is always empty; the local provider reports folders it had no permission to read.
        """
        ...

    def test(self) -> ConnectionTest:
        """Probe reachability and least-privilege permissions (list and get) without writing anything; for a
        connection that publishes its manifest, also the permission to write that one key, still writing nothing."""
        ...

    def cors_rules(self) -> list[CorsRule] | None:
        """The CORS rules the provider applies to browser reads of this bucket, in order; None where there is no
        CORS (a local folder). Raises CorsUnreadable when the credentials may not read them."""
        ...

    def put_manifest(self, key: str, data: bytes, expected: ObjectVersion | None) -> ObjectVersion:
        """Write `data` as `key`, whole, in one request, only if the object there is still `expected` (None: only if
        there is none); return the version written. The only write bucket-sync makes.

        Raises WriteConflict when another version is there, WriteDenied without permission, and BucketError for a
        key outside the connection's prefix or a connection not opened for publishing (`publish_manifest` off).
        """
        ...

    def read_manifest(self, key: str) -> tuple[bytes, ObjectVersion] | None:
        """The object at `key` and its version, or None when there is none: what a conflicting write found."""
        ...


_OBSTORE_UNSAFE_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)|//|^/|/$|[\x00-\x1f\x7f]")


def obstore_addressable(key: str) -> bool:
    """Whether obstore can read `key` exactly as stored.

    object_store rejects or rewrites keys with empty, `.` or `..` segments, a leading or trailing `/`, and control
    characters; such keys are read through the provider SDK instead.
    """
    return bool(key) and _OBSTORE_UNSAFE_SEGMENT.search(key) is None


def gone(key: str) -> ObjectGone:
    """The one wording of "deleted between listing and probe", whichever provider and read path saw it."""
    return ObjectGone(f"'{key}' no longer exists (deleted after it was listed)")


def changed(key: str) -> ObjectChanged:
    """The one wording of "overwritten between listing and probe", whichever provider and read path saw it."""
    return ObjectChanged(f"'{key}' was overwritten after it was listed (its etag changed)")


class PagedListing:
    """`iter_listing` and `list_page` from one provider method, `_pages`, so the two can never drift apart.

    `_pages(prefix, page_size, token)` yields (batch, token of the next page or None) from the page `token` names
    (None: the first), holding one client open across pages.
    """

    def _pages(self, prefix: str, page_size: int, token: str | None) -> Iterator[tuple[pa.RecordBatch, str | None]]:
        raise NotImplementedError

    def iter_listing(self, prefix: str, page_size: int = 1000) -> Iterator[pa.RecordBatch]:
        for batch, _ in self._pages(prefix, page_size, None):
            if batch.num_rows:
                yield batch

    def list_page(self, prefix: str, token: str | None, page_size: int = 1000) -> tuple[pa.RecordBatch, str | None]:
        for batch, next_token in self._pages(prefix, page_size, token):
            return batch, next_token
        return batch_from_rows([]), None

    def listing_gaps(self) -> list[str]:
        """Always empty: an object store's listing either completes or fails as a whole (ListingFailed)."""
        return []


def batch_from_rows(rows: list[dict[str, object]]) -> pa.RecordBatch:
    """One listing batch from row dicts that carry LISTING_SCHEMA's fields (missing ones become null)."""
    return pa.RecordBatch.from_pylist(rows, schema=LISTING_SCHEMA)
