"""Quotas: which listed objects a sync may index when a connection sets `max_objects` or `max_bytes`.

Admission runs in `object_listing`, right after the diff, so every later step simply never sees an object over the
quota: the probes do not read it, the manifest does not hold it, and the index records it in `skipped` instead.

The order is what makes a quota safe to set, lower and raise:

1. Every listed object that the index already holds (unchanged or changed in the diff, or the new key of a move from
   one) keeps its place, whatever the quota says now: lowering a quota, or a new key that sorts earlier, never evicts
   what is indexed.
2. Then the fresh keys, in key order, while the running count stays within `max_objects` and the running bytes within
   `max_bytes`. Admitted fresh keys are therefore a prefix of the fresh keys in key order, so one cutoff key describes
   the whole decision.

The baseline of the next sync is this sync's admitted listing (a skipped key is not in the index, so it stays fresh
and competes again next time): a deletion frees room for the next key in order, and a raised quota admits the skipped
keys on the next sync. The listing's fingerprint (for the change sensor) is taken before admission, over everything
listed, so a bucket over its quota does not look changed at every tick.

Memory stays bounded: the fresh keys are read in key order as a stream (a top-N of `max_objects` rows when that is
set, else DuckDB's spilling sort) and reading stops at the cutoff.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from resources.bucket import LISTING_SCHEMA
from resources.scratch import atomic_path, scratch_duckdb, write_parquet

#: How many skipped keys the listing state keeps as examples for the `quota` check.
EXAMPLES = 10
#: DuckDB's budget for admission; like the diff's, it bounds the step's peak however many keys there are.
QUOTA_MEMORY = "192MB"

#: A listed key the index does not hold and that did not move from one it holds: it competes for the quota.
FRESH = "change = 'new' AND moved_from IS NULL"
#: The columns of the skipped snapshot (and of the index's `skipped` table, with connection, reason and the time).
SKIPPED_COLUMNS = "key, size, etag, last_modified"


class QuotaState(BaseModel):
    """What the quota decided in one listing: the limits as they were, and what was admitted or skipped."""

    max_objects: int | None = None
    max_bytes: int | None = None
    admitted: int = Field(0, description="listed objects the sync indexes")
    admitted_bytes: int = 0
    skipped: int = Field(0, description="listed objects over the quota: recorded in `skipped`, not probed")
    skipped_bytes: int = 0
    examples: list[tuple[str, int]] = Field(default_factory=list, description="the first skipped (key, size)")

    @property
    def limited(self) -> bool:
        return self.max_objects is not None or self.max_bytes is not None

    @property
    def exceeded(self) -> list[str]:
        """The limits the bucket is over, as `name=value`, for messages."""
        listed, listed_bytes = self.admitted + self.skipped, self.admitted_bytes + self.skipped_bytes
        over = []
        if self.max_objects is not None and listed > self.max_objects:
            over.append(f"max_objects={self.max_objects}")
        if self.max_bytes is not None and listed_bytes > self.max_bytes:
            over.append(f"max_bytes={self.max_bytes}")
        return over


def cutoff(rows: pa.RecordBatchReader, room_objects: int | None, room_bytes: int | None) -> str | None:
    """The first fresh key (rows in key order) that does not fit in the room left, or None when all fit.

    `room_*` is what the quota leaves after the objects already held; None means no limit of that kind.
    """
    seen, total = 0, 0
    for batch in rows:
        if not batch.num_rows:
            continue
        keys = batch.column("key")
        if room_objects is not None and seen + batch.num_rows > room_objects:
            return keys[max(room_objects - seen, 0)].as_py()
        if room_bytes is not None:
            running = pc.add(pc.cumulative_sum(batch.column("size")), total)
            over = pc.index(pc.greater(running, room_bytes), True).as_py()
            if over >= 0:
                return keys[over].as_py()
            total = running[-1].as_py()
        seen += batch.num_rows
    return None


def admit(
    listing: Path,
    changes: Path,
    skipped: Path,
    max_objects: int | None,
    max_bytes: int | None,
) -> QuotaState:
    """Apply the quota: rewrite `changes` and `listing` to the admitted objects, write the rest to `skipped`.

    `changes` keeps every deletion (tombstones never depend on a quota). `skipped` is always written, empty when
    nothing is over the quota, so the index's record of skipped keys is replaced by this sync's every time.
    """
    con = scratch_duckdb(changes.parent / ".spill", QUOTA_MEMORY)
    con.read_parquet(str(changes)).create_view("changes")
    if max_objects is None and max_bytes is None:  # no quota: nothing to count, nothing skipped
        with atomic_path(skipped) as tmp:
            write_parquet(con, f"SELECT {SKIPPED_COLUMNS} FROM changes WHERE false", tmp)
        con.close()
        return QuotaState()
    held, held_bytes, fresh, fresh_bytes = con.execute(
        f"""
        SELECT count(*) FILTER (WHERE NOT ({FRESH})), coalesce(sum(size) FILTER (WHERE NOT ({FRESH})), 0),
               count(*) FILTER (WHERE {FRESH}), coalesce(sum(size) FILTER (WHERE {FRESH}), 0)
        FROM changes WHERE change <> 'deleted'
        """
    ).fetchone()
    room_objects = None if max_objects is None else max_objects - held
    room_bytes = None if max_bytes is None else max_bytes - held_bytes
    fits = (room_objects is None or fresh <= room_objects) and (room_bytes is None or fresh_bytes <= room_bytes)
    cut: str | None = None
    if not fits:
        limit = "" if room_objects is None else f"LIMIT {max(room_objects, 0) + 1}"
        reader = con.sql(f"SELECT key, size FROM changes WHERE {FRESH} ORDER BY key {limit}").to_arrow_reader(10_000)
        cut = cutoff(reader, room_objects, room_bytes)
    over = f"{FRESH} AND key >= $cut"
    params = {"cut": cut}
    with atomic_path(skipped) as tmp:
        if cut is None:
            write_parquet(con, f"SELECT {SKIPPED_COLUMNS} FROM changes WHERE false", tmp)
        else:
            write_parquet(con, f"SELECT {SKIPPED_COLUMNS} FROM changes WHERE {over} ORDER BY key", tmp, params)
    state = QuotaState(max_objects=max_objects, max_bytes=max_bytes)
    if cut is None:
        state.admitted, state.admitted_bytes = int(held + fresh), int(held_bytes + fresh_bytes)
        con.close()
        return state
    con.read_parquet(str(skipped)).create_view("skipped")
    count, total = con.execute("SELECT count(*), coalesce(sum(size), 0) FROM skipped").fetchone()
    state.skipped, state.skipped_bytes = int(count), int(total)
    state.admitted, state.admitted_bytes = int(held + fresh - count), int(held_bytes + fresh_bytes - total)
    examples = con.execute(f"SELECT key, size FROM skipped ORDER BY key LIMIT {EXAMPLES}").fetchall()
    state.examples = [(key, int(size)) for key, size in examples]
    columns = ", ".join(LISTING_SCHEMA.names)
    with atomic_path(listing) as tmp:  # the next sync's baseline: what the index holds after this one
        write_parquet(con, f"SELECT {columns} FROM changes WHERE change <> 'deleted' AND NOT ({over})", tmp, params)
    with atomic_path(changes) as tmp:
        write_parquet(con, f"SELECT * FROM changes WHERE NOT ({over})", tmp, params)
    con.close()
    return state
