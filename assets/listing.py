"""`object_listing`: what the bucket holds now, and how that differs from the last sync that reached the index."""

import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets.delta import DeltaListing, write_delta_listing
from assets.overlap import active_syncs
from assets.partitions import connections_partitions
from assets.progress import Progress
from assets.publish import recover
from assets.quota import admit
from assets.snapshots import EventBatch, ListingState, SnapshotKeys
from assets.typed_metadata import counts_table, table
from resources.bucket import LISTING_SCHEMA, Bucket
from resources.catalog import Connection
from resources.catalog_resource import CatalogResource
from resources.index_resource import MediaIndex
from resources.providers import open_bucket
from resources.scratch import ROW_GROUP_ROWS, atomic_path, scratch_duckdb, write_parquet
from resources.secrets import scrubbed_errors
from resources.state import StateStore

PREVIEW_KEYS = 20
#: DuckDB's budget for the listing diff. Its one big join (the listing against the baseline) outgrows any budget as
#: buckets grow, so the budget, not the key count, sets the step's peak: this one keeps a whole listing step, with
#: the interpreter, Dagster and pyarrow loaded, under 500 MB (benchmarks/listing_scale.py).
DIFF_MEMORY = "192MB"


class ListingConfig(Config):
    allow_collapse: bool = Field(
        False,
        description=(
            "Accept a listing that lost more than half of the last good one (a real mass deletion). Without it, "
            "the listing_collapse check blocks the sync so a wrong prefix or a revoked permission cannot "
            "tombstone the index."
        ),
    )
    event_batch: str | None = Field(
        None,
        description=(
            "Delta sync: the id of an event batch the bucket_events sensor stored. The bucket is not listed: each "
            "key the batch names is read with one HEAD and merged into the last baseline, then diffed as a full "
            "listing would be. Without a baseline yet, the sync lists the bucket in full (and says so)."
        ),
    )


def media_only(batch: pa.RecordBatch, conn: Connection, stats: Counter[str]) -> pa.RecordBatch:
    """The batch without folder markers, empty keys and glob-filtered keys, which are counted in `stats`.

    A connection that publishes its manifests into the bucket (`publish_manifest`) does not list `.jsonl` keys: they
    are the manifests it wrote (see assets/bucket_manifests.py), not media, and listing them would make every
    publish look like a change. They count as filtered out.
    """
    keys = batch.column("key")
    # Folder markers and empty keys are structure, not media.
    marker = pc.or_(pc.ends_with(keys, "/"), pc.equal(pc.utf8_length(keys), 0))
    stats["folder_markers"] += pc.sum(marker).as_py() or 0
    batch = batch.filter(pc.invert(marker))
    if conn.publish_manifest:
        manifests = pc.ends_with(batch.column("key"), ".jsonl")
        stats["filtered_out"] += pc.sum(manifests).as_py() or 0
        batch = batch.filter(pc.invert(manifests))
    if conn.include or conn.exclude:
        key_filter = conn.key_filter
        keep = [key_filter(conn.relative_key(k)) for k in batch.column("key").to_pylist()]
        stats["filtered_out"] += keep.count(False)
        batch = batch.filter(pa.array(keep, type=pa.bool_()))
    return batch


def media_batches(
    bucket: Bucket, conn: Connection, stats: Counter[str], progress: Progress | None = None
) -> Iterator[pa.RecordBatch]:
    """The provider listing, media keys only; each provider page counted on `progress` as it arrives."""
    for batch in bucket.iter_listing(conn.prefix):
        if progress is not None:
            progress.advance(batch.num_rows, pages=1)
        batch = media_only(batch, conn, stats)
        if batch.num_rows:
            yield batch


# An order-independent fingerprint of a listing: the count and the sum (mod 2^64) of a hash of each object version.
# Summing makes it computable page by page across sensor ticks, and equal for equal listings in any order.
_FINGERPRINT_SQL = "SELECT count(*), coalesce(sum(hash(key, coalesce(etag, ''), size)), 0)::VARCHAR FROM listing"


def fingerprint(batch: pa.RecordBatch | pa.Table) -> tuple[int, int]:
    """(count, digest) of one listing batch."""
    con = duckdb.connect()
    con.register("listing", batch)
    count, digest = con.execute(_FINGERPRINT_SQL).fetchone()
    con.close()
    return int(count), int(digest) % 2**64


def listing_fingerprint(listing: Path) -> tuple[int, int]:
    """(count, digest) of a listing file: equal to the sum of `fingerprint` over its batches."""
    con = duckdb.connect()
    con.read_parquet(str(listing)).create_view("listing")
    count, digest = con.execute(_FINGERPRINT_SQL).fetchone()
    con.close()
    return int(count), int(digest) % 2**64


def summarize(batches: Iterator[pa.RecordBatch], stats: Counter[str]) -> Iterator[pa.RecordBatch]:
    """Pass batches through while counting objects, bytes and extensions and keeping the first sample keys."""
    extensions: Counter[str] = Counter()
    samples: list[str] = []
    stats.update(listed=0, bytes=0)
    for batch in batches:
        stats["listed"] += batch.num_rows
        stats["bytes"] += pc.sum(batch.column("size")).as_py() or 0
        for key in batch.column("key").to_pylist():
            extensions[PurePosixPath(key).suffix.lower() or "(none)"] += 1
            if len(samples) < PREVIEW_KEYS:
                samples.append(key)
        yield batch
    stats["extensions"] = dict(extensions.most_common())  # type: ignore[assignment]
    stats["samples"] = samples  # type: ignore[assignment]


def preview(bucket: Bucket, conn: Connection) -> dict[str, Any]:
    """What a sync would see, from the listing alone: counts, bytes, extensions, sample keys. Reads no object."""
    stats: Counter[str] = Counter()
    for _ in summarize(media_batches(bucket, conn, stats), stats):
        pass
    return dict(stats)


def row_groups(batches: Iterator[pa.RecordBatch], rows: int = ROW_GROUP_ROWS) -> Iterator[pa.Table]:
    """The batches regrouped into tables of about `rows` rows, so each becomes one Parquet row group.

    A provider pages 1000 keys at a time; written as they come, every page became its own row group, and a listing
    of millions of keys carried thousands of groups whose metadata every later DuckDB scan of it held in memory.
    Only one group's rows are held here at a time.
    """
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending, schema=LISTING_SCHEMA)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema=LISTING_SCHEMA)


def write_listing(bucket: Bucket, conn: Connection, target: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Stream the media-eligible listing into Parquet. Returns what it saw."""
    stats: Counter[str] = Counter()
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, LISTING_SCHEMA) as writer:
        for group in row_groups(summarize(media_batches(bucket, conn, stats, progress), stats)):
            writer.write_table(group, row_group_size=group.num_rows)
    # Arrow's allocator keeps freed pages for reuse; the diff that follows runs in DuckDB, which cannot use them.
    pa.default_memory_pool().release_unused()
    return dict(stats)


def keep_unread_parts(listing: Path, baseline: Path, gaps: list[str]) -> int:
    """Add to `listing` the baseline rows under `gaps`, folders the provider could not read this time.

    An unreadable folder says nothing about its files: they keep their last known state (unchanged in the diff) rather
    than being tombstoned. Returns how many rows were kept that way.
    """
    if not gaps or not baseline.exists():
        return 0
    con = scratch_duckdb(listing.parent / ".spill", DIFF_MEMORY)
    con.read_parquet(str(listing)).create_view("n")
    con.read_parquet(str(baseline)).create_view("b")
    kept = con.sql(
        """
        SELECT b.* FROM b ANTI JOIN n ON b.key = n.key
        WHERE EXISTS (SELECT 1 FROM unnest($gaps) AS g(folder) WHERE starts_with(b.key, g.folder))
        """,
        params={"gaps": gaps},
    )
    kept.create_view("kept")
    count = int(con.execute("SELECT count(*) FROM kept").fetchall()[0][0])
    if count:
        with atomic_path(listing) as tmp:
            con.sql("SELECT * FROM n UNION ALL BY NAME SELECT * FROM kept").write_parquet(str(tmp))
    con.close()
    return count


# The diff runs as four statements, each one join or scan written straight to Parquet, rather than one query: as one
# query DuckDB materialised `cur` (every listed row) and `gone` in memory to serve the CTEs used twice, so its memory
# grew with the bucket. Each step below holds at most one hash table (the baseline's keys and versions) and spills it
# under the memory cap. Move pairing runs only over (size, fingerprint) groups present on both sides, which are few
# (the renames), instead of numbering every new object of a first listing.
_CUR_SQL = """
    SELECT n.*, CASE
        WHEN b.key IS NULL THEN 'new'
        WHEN n.etag IS DISTINCT FROM b.etag OR n.size <> b.size
             OR n.last_modified IS DISTINCT FROM b.last_modified
             OR n.version IS DISTINCT FROM b.version THEN 'changed'
        ELSE 'unchanged' END AS change
    FROM n LEFT JOIN (SELECT key, etag, size, last_modified, version FROM b) b ON n.key = b.key
"""
_GONE_SQL = "SELECT b.*, 'deleted' AS change FROM b ANTI JOIN (SELECT key FROM n) n ON b.key = n.key"
# Pairs a vanished key with a new key of the same size and fingerprint; when several share both, the k-th of each
# side in key order pair up, so a re-run pairs the same way.
_MOVES_SQL = """
    WITH fresh AS (
        SELECT key, size, coalesce(content_md5, etag) AS fp FROM cur
        WHERE change = 'new' AND coalesce(content_md5, etag) IS NOT NULL
    ),
    old AS (
        SELECT key, size, coalesce(content_md5, etag) AS fp FROM gone WHERE coalesce(content_md5, etag) IS NOT NULL
    ),
    -- Each semi join builds its hash table on the side bounded by the deletions, never on every new key.
    fresh_match AS (SELECT * FROM fresh SEMI JOIN old USING (size, fp)),
    old_match AS (SELECT * FROM old SEMI JOIN fresh_match USING (size, fp)),
    fresh_fp AS (
        SELECT key, size, fp, row_number() OVER (PARTITION BY size, fp ORDER BY key) AS rn FROM fresh_match
    ),
    gone_fp AS (
        SELECT key, size, fp, row_number() OVER (PARTITION BY size, fp ORDER BY key) AS rn FROM old_match
    )
    SELECT g.key AS old_key, f.key AS new_key FROM fresh_fp f JOIN gone_fp g USING (size, fp, rn)
"""
_CHANGES_SQL = """
    SELECT cur.*, m.old_key AS moved_from, NULL::VARCHAR AS moved_to
    FROM cur LEFT JOIN moves m ON cur.key = m.new_key
    UNION ALL BY NAME
    SELECT gone.*, NULL::VARCHAR AS moved_from, m.new_key AS moved_to
    FROM gone LEFT JOIN moves m ON gone.key = m.old_key
"""


def diff_listing(listing: Path, baseline: Path, target: Path) -> dict[str, int]:
    """Classify every key as new, changed, unchanged or deleted against the baseline, and pair moves.

    Runs in DuckDB over the two Parquet files, step by step through Parquet files in the spill folder, so memory is
    bounded by the DuckDB cap however many keys the bucket holds. A key that vanished while a new key appeared with
    the same size and the same content fingerprint (the provider's MD5, else its etag, which providers only repeat
    for identical content or a rename) is a move, not a delete plus an add.
    """
    spill = target.parent / ".spill"
    con = scratch_duckdb(spill, DIFF_MEMORY)
    con.read_parquet(str(listing)).create_view("n")
    if baseline.exists():
        con.read_parquet(str(baseline)).create_view("b")
    else:
        con.execute("CREATE VIEW b AS SELECT * FROM n WHERE false")
    with tempfile.TemporaryDirectory(prefix="diff-", dir=spill) as steps:
        for name, sql in (("cur", _CUR_SQL), ("gone", _GONE_SQL), ("moves", _MOVES_SQL)):
            path = Path(steps) / f"{name}.parquet"
            write_parquet(con, sql, path)
            con.read_parquet(str(path)).create_view(name)
        with atomic_path(target) as tmp:
            write_parquet(con, _CHANGES_SQL, tmp)
        row = con.execute(
            """
            SELECT count(*) FILTER (WHERE change <> 'deleted'),
                   count(*) FILTER (WHERE change = 'new' AND moved_from IS NULL),
                   count(*) FILTER (WHERE change = 'changed'),
                   count(*) FILTER (WHERE change = 'unchanged'),
                   count(*) FILTER (WHERE change = 'deleted' AND moved_to IS NULL),
                   count(*) FILTER (WHERE moved_from IS NOT NULL),
                   (SELECT count(*) FROM b)
            FROM read_parquet($target)
            """,
            {"target": str(target)},
        ).fetchone()
        con.close()
    names = ("listed", "new", "changed", "unchanged", "deleted", "moved", "baseline_listed")
    return dict(zip(names, (int(v) for v in row), strict=True))


def refuse_overlap(context: AssetExecutionContext, name: str) -> None:
    """Fail fast if another run is syncing this connection: two syncs would race on its snapshots and baseline.

    The run queue's per-partition limit (dagster.yaml) keeps UI and daemon launches apart; this guard also covers
    runs that bypass the queue, such as `bucket-sync sync` and tests executing in process.
    """
    others = active_syncs(context.instance, name, exclude_run_id=context.run.run_id)
    if others:
        raise Failure(
            f"connection '{name}' is already being synced by run {others[0]}; wait for it to finish "
            "(two syncs of one connection never run at once)"
        )


def _preview_table(samples: list[str]) -> MetadataValue:
    """The sample keys as a table with a schema, which the UI renders and sorts (a markdown table it cannot)."""
    return table([("key", "string", "a sample key under the prefix")], [(k,) for k in samples])


@asset(
    partitions_def=connections_partitions,
    group_name="sync",
    kinds={"parquet"},
    description="Every object under the connection's prefix, diffed against the last sync that reached the index.",
)
@scrubbed_errors
def object_listing(
    context: AssetExecutionContext,
    config: ListingConfig,
    catalog: CatalogResource,
    state_store: StateStore,
    index: MediaIndex,
) -> MaterializeResult:
    name = context.partition_key
    refuse_overlap(context, name)
    keys = SnapshotKeys(name)
    # No other run syncs this connection now: what earlier runs left half-done is ours to finish or clear.
    leftovers = state_store.remove_leftovers(keys.prefix) + state_store.remove_leftovers(keys.manifest_prefix)
    leftovers += state_store.remove_stale_scratch(name)
    if leftovers:
        context.log.info(f"'{name}': removed {leftovers} temporary file(s) or folder(s) left by a killed run")
    recover(state_store, index, name, context.log.info)
    conn = catalog.connection(name)
    started_at = datetime.now(UTC)
    bucket = open_bucket(conn)
    # Read before listing starts: every change these batches name happened before it, so this sync covers them.
    pending = EventBatch.pending(state_store, name)
    events = None
    if config.event_batch:
        if config.event_batch not in {b.batch_id for b in pending}:
            context.log.info(
                f"'{name}': event batch '{config.event_batch}' is no longer pending (an earlier sync covered it, or "
                f"it was never stored in {state_store.location}); syncing the {len(pending)} batch(es) still pending"
            )
        events = EventBatch.merged(name, config.event_batch, pending)
    delta: DeltaListing | None = None
    with state_store.scratch_dir(name, "listing") as scratch:
        listing, baseline = scratch / "listing.parquet", scratch / "baseline.parquet"
        changes = scratch / "changes.parquet"
        has_baseline = state_store.fetch(keys.baseline, baseline)
        if events is not None and has_baseline:
            context.log.info(
                f"delta sync of {conn.provider} connection '{name}': {len(events.keys)} key(s) from event batch "
                f"'{events.batch_id}', one HEAD each; the bucket is not listed"
            )
            delta, seen = write_delta(bucket, conn, events, baseline, listing)
            if delta.failed:
                context.log.warning(
                    f"'{name}': the state of {len(delta.failed)} key(s) could not be read; they keep their last "
                    f"known state until a later sync: {'; '.join(list(delta.failed.values())[:5])}"
                )
            gaps, kept = [], 0
        else:
            if events is not None:
                context.log.warning(
                    f"'{name}': event batch '{events.batch_id}' asked for a delta sync, but this connection has no "
                    "baseline yet (never synced); listing the whole bucket instead"
                )
            context.log.info(f"listing {conn.provider} connection '{name}' under prefix '{conn.prefix}'")
            with Progress(context.log, f"listing '{name}'", total=None) as progress:
                seen = write_listing(bucket, conn, listing, progress)
            gaps = bucket.listing_gaps()
            kept = keep_unread_parts(listing, baseline, gaps)
        if gaps:
            context.log.warning(
                f"'{name}': {len(gaps)} folder(s) could not be read; their {kept} known object(s) keep their last "
                f"state: {', '.join(gaps[:10])}"
            )
        counts = diff_listing(listing, baseline, changes)
        listed_fingerprint = listing_fingerprint(listing)  # of everything listed, before the quota
        quota = admit(listing, changes, scratch / "skipped.parquet", conn.max_objects, conn.max_bytes)
        counts["new"] -= quota.skipped  # only fresh keys are ever skipped: `listed` still counts them
        state_store.put(keys.listing, listing)
        state_store.put(keys.changes, changes)
        state_store.put(keys.skipped, scratch / "skipped.parquet")
    state = ListingState(
        run_id=context.run.run_id,
        started_at=started_at,
        allow_collapse=config.allow_collapse,
        sync_kind="delta" if delta is not None else "full",
        event_keys=len(events.keys) if events is not None else 0,
        covered_batches=[b.batch_id for b in pending],
        bytes=seen.get("bytes", 0),
        folder_markers=seen.get("folder_markers", 0),
        filtered_out=seen.get("filtered_out", 0),
        extensions=seen["extensions"],
        gaps=gaps,
        kept_unread=kept,
        fingerprint=listed_fingerprint,
        quota=quota,
        **counts,
    )
    state.save(state_store, name)
    kind = f"{state.sync_kind} sync" + (f" of {state.event_keys} event key(s)" if delta is not None else "")
    context.log.info(
        f"'{name}' ({kind}): {counts['listed']} objects ({counts['new']} new, {counts['changed']} changed, "
        f"{counts['unchanged']} unchanged, {counts['deleted']} deleted, {counts['moved']} moved)"
    )
    if quota.skipped:
        context.log.warning(
            f"'{name}': {quota.skipped} object(s) ({quota.skipped_bytes:,} bytes) over the quota "
            f"({', '.join(quota.exceeded)}) are skipped: recorded in the index's `skipped` table, not probed"
        )
    summary = (
        f"{kind.capitalize()}: **{counts['listed']}** objects, {state.bytes:,} bytes under `{conn.prefix or '/'}`: "
        f"{counts['new']} new, {counts['changed']} changed, {counts['unchanged']} unchanged, "
        f"{counts['deleted']} deleted, {counts['moved']} moved. "
        f"{state.folder_markers} folder markers and {state.filtered_out} filtered keys skipped."
    )
    return MaterializeResult(
        metadata={
            **{k: MetadataValue.int(v) for k, v in counts.items()},
            "bytes": MetadataValue.int(state.bytes),
            "folder_markers": MetadataValue.int(state.folder_markers),
            "filtered_out": MetadataValue.int(state.filtered_out),
            "over_quota": MetadataValue.int(quota.skipped),
            "unread_folders": MetadataValue.json(gaps),
            "extensions": counts_table("extension", seen["extensions"]),
            "preview": _preview_table(seen["samples"]),
            "summary": MetadataValue.md(summary),
            "snapshot": MetadataValue.text(f"{state_store.location}/{keys.changes}"),
            **delta_metadata(state, events, delta),
        }
    )


def write_delta(
    bucket: Bucket, conn: Connection, events: EventBatch, baseline: Path, target: Path
) -> tuple[DeltaListing, dict[str, Any]]:
    """The delta listing of `events` (assets/delta.py), and what `write_listing` would report of it: counts, bytes and
    extensions over the whole listing, and the batch's own folder markers and filtered keys."""
    stats: Counter[str] = Counter()
    delta = write_delta_listing(
        bucket, events.keys, conn.prefix, lambda batch: media_only(batch, conn, stats), baseline, target
    )
    for _ in summarize(pq.ParquetFile(target).iter_batches(), stats):
        pass
    return delta, dict(stats)


def delta_metadata(state: ListingState, events: EventBatch | None, delta: DeltaListing | None) -> dict[str, Any]:
    """What the asset's metadata says of the kind of sync: full or delta, and for a delta what its HEADs found."""
    metadata: dict[str, Any] = {"sync_kind": MetadataValue.text(state.sync_kind)}
    if events is not None:
        metadata["event_batch"] = MetadataValue.text(events.batch_id)
        metadata["event_keys"] = MetadataValue.int(state.event_keys)
    if events is not None and delta is None:
        metadata["delta_fallback"] = MetadataValue.text("no baseline yet: the bucket was listed in full")
    if delta is not None:
        metadata["heads"] = MetadataValue.int(delta.heads)
        metadata["heads_absent"] = MetadataValue.int(delta.absent)
        metadata["heads_failed"] = MetadataValue.json(delta.failed)
        metadata["outside_prefix"] = MetadataValue.int(delta.outside_prefix)
    return metadata
