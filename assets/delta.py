"""The delta listing: what the bucket holds now, from the last baseline and one HEAD per key a batch of events names.

A delta sync (run config `event_batch`) does not list the bucket. The events only say which keys to look at: their
kinds are hints, never the truth, because a queue may deliver late, twice or out of order (a "created" after the
"deleted" that followed it). The HEAD decides: a key that exists gets the row a listing would give it now, a key that
does not is absent. So duplicated, reordered or stale events leave the same listing as a full sync of the bucket's
state at the time of the HEADs would, and the diff that follows (assets/listing.py `diff_listing`, the same as for a
full sync) finds the same new, changed, deleted and moved objects.

The listing is baseline-sized (every baseline row not named by the batch, plus the named keys that exist), not
event-sized, so the diff carries unchanged objects forward and the `listing_collapse` check compares like with like:
a delta deleting more than half of the bucket is blocked exactly as a full sync of the same deletions would be.

A key whose HEAD fails for any reason other than "not found" (throttling that outlasted the retries, a permission
denied on one object) keeps its baseline row: an error is never taken as a deletion. The scheduled full sync
reconciles whatever a lost event or a failed HEAD left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from resources.bucket import LISTING_SCHEMA, Bucket, BucketError, batch_from_rows
from resources.scratch import ROW_GROUP_ROWS, atomic_path, scratch_duckdb
from resources.secrets import scrub

#: HEADs in flight at once: a batch of thousands of events should not take thousands of round trips in a row, and
#: one connection's HEADs should not crowd out the rest of the machine.
HEAD_CONCURRENCY = 16
#: DuckDB's budget for merging the baseline with the HEAD rows (one anti join, spilled beyond it).
MERGE_MEMORY = "192MB"


@dataclass
class DeltaListing:
    """What building a delta listing did: keys looked at, HEADs sent, and the keys whose state could not be read."""

    event_keys: int
    outside_prefix: int = 0
    heads: int = 0
    present: int = 0
    absent: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def head_rows(bucket: Bucket, keys: list[str]) -> tuple[list[dict[str, object]], list[str], dict[str, str]]:
    """One HEAD per key, concurrently: the rows of the keys that exist, the keys that do not, and the scrubbed error
    of each key whose state could not be read."""
    rows: list[dict[str, object]] = []
    absent: list[str] = []
    failed: dict[str, str] = {}

    def one(key: str) -> tuple[str, dict[str, object] | None, str | None]:
        try:
            return key, bucket.head(key), None
        except BucketError as exc:
            return key, None, scrub(str(exc))

    # The first HEAD goes alone: it builds the provider's client (a cached property), which threads racing to build
    # it would each build, on sessions that are not thread-safe while they are being made.
    answers = [one(keys[0])] if keys else []
    with ThreadPoolExecutor(max_workers=max(1, min(HEAD_CONCURRENCY, len(keys)))) as pool:
        answers += pool.map(one, keys[1:])
        for key, row, error in answers:
            if error is not None:
                failed[key] = error
            elif row is None:
                absent.append(key)
            else:
                rows.append(row)
    return rows, absent, failed


def write_delta_listing(
    bucket: Bucket,
    keys: list[str],
    prefix: str,
    eligible: Callable[[pa.RecordBatch], pa.RecordBatch],
    baseline: Path,
    target: Path,
) -> DeltaListing:
    """Write to `target` the listing a full sync would see: the baseline's rows for keys the batch does not name,
    and the current row of each named key that exists and is media (`eligible`: the listing's own filter of folder
    markers, globs and published manifests, applied to the names before any HEAD is sent).

    Keys outside `prefix` are not this connection's and are dropped unread; keys the filter refuses are dropped
    unread too (a full listing would not keep them either), so their baseline rows, if any, leave the listing.
    """
    named = [k for k in keys if k.startswith(prefix)]
    outcome = DeltaListing(event_keys=len(keys), outside_prefix=len(keys) - len(named))
    names = batch_from_rows([{"key": k, "size": 0} for k in named])
    wanted = eligible(names).column("key").to_pylist() if named else []
    rows, absent, failed = head_rows(bucket, wanted)
    outcome.heads, outcome.present, outcome.absent, outcome.failed = len(wanted), len(rows), len(absent), failed
    # Every named key leaves the baseline part, except those whose state is unknown (a failed HEAD keeps its row).
    replaced = [k for k in named if k not in failed]
    heads = pa.Table.from_batches([batch_from_rows(rows)], schema=LISTING_SCHEMA)
    con = scratch_duckdb(target.parent / ".spill", MERGE_MEMORY)
    try:
        con.read_parquet(str(baseline)).create_view("b")
        con.register("heads", heads)
        con.register("replaced", pa.table({"key": pa.array(replaced, type=pa.string())}))
        merged = con.sql("SELECT * FROM b ANTI JOIN replaced USING (key) UNION ALL BY NAME SELECT * FROM heads")
        with atomic_path(target) as tmp, pq.ParquetWriter(tmp, LISTING_SCHEMA) as writer:
            for batch in merged.to_arrow_reader(batch_size=ROW_GROUP_ROWS):
                writer.write_batch(batch.select(LISTING_SCHEMA.names).cast(LISTING_SCHEMA))
    finally:
        con.close()
    return outcome
