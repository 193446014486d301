"""`media_probes`: facts and verdicts for every current object, reading only what is new or changed.

Facts are cached by object version (key, etag, size, last_modified): an unchanged object's facts are carried forward,
a moved object's facts follow it to its new key, and only the rest is read, a few byte ranges each, many at once.
"""

import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets.listing import object_listing
from assets.partitions import connections_partitions
from assets.progress import Progress
from assets.snapshots import ListingState, SnapshotKeys
from assets.thumbnails import ThumbnailCollector, merge_thumbnails
from assets.typed_metadata import counts_table, rounded
from media.cvat import NAME_SQL
from media.facts import FACT_COLUMNS, FACT_SCHEMA, ColumnType, MediaFacts
from media.probe import READ_FAILED, probe, settle_failure
from media.ranges import RangeReader
from media.rules import (
    ALL_RULES,
    Profile,
    get_profile,
    judge,
    judged_by,
    manifest_size,
    name_collision,
    verdict_travels_sql,
)
from media.thumbnail import embedded_thumbnail
from resources.bucket import Bucket
from resources.catalog import Connection
from resources.catalog_resource import CatalogResource
from resources.providers import open_bucket, probe_concurrency
from resources.scratch import atomic_path, scratch_duckdb
from resources.secrets import scrubbed_errors
from resources.state import StateStore

#: The Arrow type of each column type a fact can declare (media.facts.ColumnType).
ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string_list": pa.list_(pa.string()),
    "keyframe_list": pa.list_(pa.struct([("number", pa.int64()), ("pts", pa.int64())])),
}


def fact_fields() -> list[pa.Field]:
    """The facts' columns as Arrow fields, derived from media.facts.FACT_SCHEMA (nullable, as every snapshot had it)."""
    return [pa.field(column.name, ARROW_TYPES[column.type]) for column in FACT_SCHEMA]


#: One probes row: the object's listing columns and verdict, its facts (derived from MediaFacts), and its judge.
PROBES_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("last_modified", pa.timestamp("us", tz="UTC")),
        ("version", pa.string()),
        ("source", pa.string()),  # probed | carried | moved
        ("probed_at", pa.timestamp("us", tz="UTC")),
        ("accepted", pa.bool_()),
        ("manifest_width", pa.int32()),
        ("manifest_height", pa.int32()),
        *fact_fields(),
        ("judged_by", pa.string()),  # profile@rules version of `accepted` and the violations: see media.rules
    ]
)

VIOLATIONS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("rule", pa.string()),
        ("severity", pa.string()),
        ("message", pa.string()),
        ("remediation", pa.string()),
    ]
)
BATCH_ROWS = 2048


class ProbeConfig(Config):
    full: bool = Field(False, description="Re-probe every object, ignoring facts carried from earlier syncs.")
    concurrency: int | None = Field(None, ge=1, le=256, description="Ranged reads in flight; default per provider.")
    checkpoint_rows: int = Field(
        500, ge=1, description="Probe results are checkpointed every this many objects (and every 10 s)."
    )


def probe_object(
    bucket: Bucket,
    key: str,
    size: int,
    etag: str | None,
    end_check: bool = True,
    with_thumbnail: list[bytes | None] | None = None,
) -> MediaFacts:
    """Facts for one object from a few ranged reads. Never raises: a bad object becomes an error fact.

    `end_check` is the profile's (media.rules.Profile.end_check): whether the file's last bytes are read too.
    `with_thumbnail`, when given, receives a JPEG's embedded thumbnail (or None) from the bytes already read.

    An object that can never be read (ObjectUnreadable) becomes media's UnreadableObject, which the reader passes
    through unwrapped: its error is a verdict on the file, not a "read failed" that every sync would retry.
    """
    # Imported here so this fix stays one hunk of this function while the rest of the module is edited in parallel.
    from media.ranges import UnreadableObject
    from resources.bucket import ObjectUnreadable

    def fetch(start: int, end: int) -> bytes:
        try:
            return bucket.read_range(key, start, end, etag)
        except ObjectUnreadable as exc:
            raise UnreadableObject(str(exc)) from exc

    reader = RangeReader(fetch, size)
    facts = probe(reader, extension=PurePosixPath(key).suffix.lower() or None, end_check=end_check)
    if with_thumbnail is not None and facts.format == "jpeg":
        with_thumbnail.append(embedded_thumbnail(reader.cached))
    return facts


def probe_with_thumbnail(
    bucket: Bucket, key: str, size: int, etag: str | None, end_check: bool = True
) -> tuple[MediaFacts, bytes | None]:
    """`probe_object`, and the JPEG's embedded EXIF thumbnail when it lies in the bytes the probe read (no extra
    read: see media.thumbnail). Kept for the report only if the object breaks a rule."""
    found: list[bytes | None] = []
    facts = probe_object(bucket, key, size, etag, end_check, with_thumbnail=found)
    return facts, found[0] if found else None


def probe_all(
    bucket: Bucket, rows: Iterator[dict[str, Any]], concurrency: int, end_check: bool = True
) -> Iterator[tuple[dict[str, Any], tuple[MediaFacts, bytes | None]]]:
    """Probe rows with up to `concurrency` objects in flight, yielding (row, (facts, thumbnail)) in input order.

    A bounded window of futures (not one per object) keeps memory flat for buckets of millions of keys.
    """
    window: deque[tuple[dict[str, Any], Future[tuple[MediaFacts, bytes | None]]]] = deque()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe")
    try:
        for row in rows:
            window.append(
                (row, pool.submit(probe_with_thumbnail, bucket, row["key"], row["size"], row["etag"], end_check))
            )
            if len(window) >= concurrency * 4:
                head, future = window.popleft()
                yield head, future.result()
        while window:
            head, future = window.popleft()
            yield head, future.result()
    finally:
        # On an interrupt (SIGTERM in a run worker, a failed step) the queued probes are dropped and the reads in
        # flight are not waited for: each is bounded by its request timeout and ends on its own.
        pool.shutdown(wait=not window, cancel_futures=True)


def _plan(changes: Path, known: list[Path], con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB session with table `plan`: each current object, what to do with it, and whose facts it can reuse.

    `known` are Parquet files of earlier facts (the last sync's probes, and checkpoints of an interrupted run; the
    newest fact per key wins). `carried`: the same object version was probed before. `moved`: its content was
    probed under the key it moved from. `probe`: read it; `previous_error` is what the last probe of the same
    version recorded, if it failed to read (see `settle_failure`). The plan is a table, not a view: every later
    query of the step reads it, and joining the listing with the facts again for each would repeat the costliest
    part of the step. Builds it in `con` when given, else in a new scratch session.
    """
    con = con or scratch_duckdb(changes.parent / ".spill")
    con.read_parquet(str(changes)).create_view("changes")
    con.execute("CREATE VIEW c AS SELECT * FROM changes WHERE change <> 'deleted'")
    if not known:
        con.execute(
            "CREATE TEMP TABLE plan AS SELECT c.*, 'probe' AS action, NULL::VARCHAR AS facts_key, "
            "NULL::VARCHAR AS previous_error FROM c"
        )
        return con
    facts = con.read_parquet([str(path) for path in known], union_by_name=True, filename=True)
    facts.create_view("known_facts")
    # Facts written before a column existed lack it: no version matches no versioned listing row, no judge means the
    # verdict is judged again, and a fact added to MediaFacts since is null (unknown) until the object is probed again
    # (it changes, or `--full`).
    typed = con.from_arrow(PROBES_SCHEMA.empty_table())
    missing = "".join(
        f", NULL::{sql_type} AS {column}"
        for column, sql_type in zip(typed.columns, typed.types, strict=True)
        if column not in facts.columns
    )
    # One snapshot holds one row per key; only several files (checkpoint parts beside it) need the newest picked.
    newest = (
        "" if len(known) == 1 else "QUALIFY row_number() OVER (PARTITION BY key ORDER BY probed_at DESC NULLS LAST) = 1"
    )
    con.execute(f"CREATE VIEW p AS SELECT *{missing} FROM known_facts {newest}")
    # A read that failed (network, throttling, object changed mid-read) says nothing about the file: probe it again.
    same_object = (
        "p.key IS NOT NULL AND p.etag IS NOT DISTINCT FROM c.etag AND p.size = c.size "
        "AND p.last_modified IS NOT DISTINCT FROM c.last_modified AND p.version IS NOT DISTINCT FROM c.version"
    )
    read_failed = f"starts_with(coalesce(p.error, ''), '{READ_FAILED}')"
    # A readable video probed before key frames were listed (no notes column then) is probed once more to get them.
    before_key_frames = "(p.kind = 'video' AND p.error IS NULL AND p.notes IS NULL)"
    same_version = f"{same_object} AND NOT {read_failed} AND NOT {before_key_frames}"
    con.execute(
        f"""
        CREATE TEMP TABLE plan AS
        SELECT c.*,
               CASE WHEN {same_version} THEN 'carried' WHEN m.key IS NOT NULL THEN 'moved' ELSE 'probe' END AS action,
               CASE WHEN {same_version} THEN p.key WHEN m.key IS NOT NULL THEN m.key END AS facts_key,
               CASE WHEN {same_object} AND {read_failed} THEN p.error END AS previous_error
        FROM c LEFT JOIN p ON p.key = c.key LEFT JOIN p AS m ON m.key = c.moved_from AND m.size = c.size
            AND NOT starts_with(coalesce(m.error, ''), '{READ_FAILED}')
        """
    )
    return con


class Checkpoint:
    """Probe results saved to the state store while a sync runs, one whole Parquet part at a time.

    A run killed at any point (even SIGKILL, even its machine) leaves whole parts behind; the next run, wherever it
    runs, reads them as known facts and re-reads only the objects it had not finished. They are removed once the
    probes snapshot is stored.
    """

    def __init__(self, store: StateStore, prefix: str, scratch: Path, every_rows: int, every_s: float = 10.0) -> None:
        self.store, self.prefix, self.scratch = store, prefix, scratch
        self.every_rows, self.every_s = every_rows, every_s
        self.rows: list[dict[str, Any]] = []
        self.flushed = False
        self._last = time.monotonic()

    def parts(self) -> list[str]:
        return [k for k in self.store.list(self.prefix) if k.endswith(".parquet")]

    def fetch_parts(self, folder: Path) -> list[Path]:
        """Local copies of every part, for the plan to read as known facts."""
        local = []
        for key in self.parts():
            path = folder / key.rsplit("/", 1)[-1]
            if self.store.fetch(key, path):
                local.append(path)
        return local

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.every_rows or time.monotonic() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        name = f"part-{time.time_ns():020d}.parquet"
        local = self.scratch / name
        pq.write_table(pa.Table.from_pylist(self.rows, schema=PROBES_SCHEMA), local)
        self.store.put(self.prefix + name, local)
        self.flushed = True
        self.rows = []
        self._last = time.monotonic()

    def clear(self) -> None:
        for key in self.parts():
            self.store.delete(key)


def _batches(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[dict[str, Any]]:
    reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
    for batch in reader:
        yield from batch.to_pylist()


def snapshot_still_holds(con: duckdb.DuckDBPyConnection, changes: Path, previous: Path, judge: str) -> bool:
    """Whether the last probes snapshot is already this sync's: nothing to read, judge or carry row by row.

    True when the snapshot holds exactly the current objects, each the same version as listed now, none whose read
    failed, all judged under the same profile and rules. Its facts, verdicts, name collisions and violations then all
    stand as they are. One join on the key decides it, before any plan is built: an unchanged re-sync costs one pass
    over the listing and the snapshot.
    """
    if not {"version", "judged_by"} <= set(pq.read_schema(previous).names):
        return False  # written before verdicts were versioned: judged again on the ordinary path
    listed, known, same = con.execute(
        f"""
        SELECT (SELECT count(*) FROM read_parquet($changes) WHERE change <> 'deleted'),
               (SELECT count(*) FROM read_parquet($previous)),
               (SELECT count(*) FROM read_parquet($changes) c JOIN read_parquet($previous) p USING (key)
                WHERE c.change <> 'deleted' AND p.size = c.size AND p.etag IS NOT DISTINCT FROM c.etag
                  AND p.last_modified IS NOT DISTINCT FROM c.last_modified AND p.version IS NOT DISTINCT FROM c.version
                  AND p.judged_by = $judge AND NOT starts_with(coalesce(p.error, ''), '{READ_FAILED}'))
        """,
        {"changes": str(changes), "previous": str(previous), "judge": judge},
    ).fetchone()
    # Keys are unique on both sides: every current object has its version in a good row, and nothing else is there.
    return listed == known == same


def relabel_carried(con: duckdb.DuckDBPyConnection, previous: Path, target: Path) -> bool:
    """Write `previous` to `target` with every row's source set to 'carried', unless it already says so throughout.

    Returns whether it wrote `target`. An unchanged re-sync after a re-sync finds nothing to relabel, so the stored
    snapshot is left exactly as it is (not even rewritten).
    """
    (relabel,) = con.execute(
        "SELECT count(*) FROM read_parquet($p) WHERE source IS DISTINCT FROM 'carried'", {"p": str(previous)}
    ).fetchone()
    if not relabel:
        return False
    columns = ", ".join("'carried' AS source" if c == "source" else c for c in PROBES_SCHEMA.names)
    con.sql(f"SELECT {columns} FROM read_parquet($p)", params={"p": str(previous)}).write_parquet(str(target))
    return True


def carry_verdicts(
    con: duckdb.DuckDBPyConnection,
    previous: Path,
    previous_violations: Path,
    judge: str,
    probes_target: Path,
    violations_target: Path,
) -> int:
    """Carry unchanged and moved objects forward with their facts and their verdicts, as set operations over Parquet.

    An object of the same version, whose facts come from the last sync and whose verdict was judged under the same
    profile and rules, needs nothing recomputed: its probes row and its violations are copied in two queries, with no
    Python loop per row. A moved object takes its old key's row and findings along when its verdict cannot depend on
    the move (same file name, both keys addressable: `verdict_travels_sql`) and has no finding, whose fix would name
    the old key. The rest (renames, facts from
    checkpoints, other rules, keys with a manifest_name finding, whose verdict depends on other objects) is left to
    the row-by-row path. Creates table `carried` (key, facts_key, source); returns how many rows it carried.
    """
    con.execute(
        f"""
        CREATE TEMP TABLE carried AS
        SELECT plan.key, plan.facts_key, CASE plan.action WHEN 'carried' THEN 'carried' ELSE 'moved' END AS source
        FROM plan JOIN p ON p.key = plan.facts_key
        WHERE p.filename = $previous AND p.judged_by = $judge
          AND (plan.action = 'carried'
               OR (plan.action = 'moved' AND {verdict_travels_sql("plan.facts_key", "plan.key")}))
          AND plan.facts_key NOT IN (SELECT key FROM read_parquet($violations) WHERE rule = 'manifest_name')
          -- A finding's fix names the object by its full key (media/rules.py), so a moved object with findings is
          -- judged again under its new key; only a clean verdict travels as is.
          AND (plan.action = 'carried' OR plan.facts_key NOT IN (SELECT key FROM read_parquet($violations)))
        """,
        {"previous": str(previous), "judge": judge, "violations": str(previous_violations)},
    )
    listing_columns = ("key", "size", "etag", "last_modified", "version")
    columns = ", ".join(
        f"plan.{c}" if c in listing_columns else ("carried.source" if c == "source" else f"p.{c}")
        for c in PROBES_SCHEMA.names
    )
    con.sql(f"SELECT {columns} FROM carried JOIN plan USING (key) JOIN p ON p.key = carried.facts_key").write_parquet(
        str(probes_target)
    )
    con.sql(
        "SELECT carried.key, v.* EXCLUDE (key) FROM read_parquet($v) v JOIN carried ON carried.facts_key = v.key",
        params={"v": str(previous_violations)},
    ).write_parquet(str(violations_target))
    return int(con.execute("SELECT count(*) FROM carried").fetchall()[0][0])


def carried_stats(con: duckdb.DuckDBPyConnection, probes: Path, violations: Path) -> Counter[str]:
    """The counters `_Writer` keeps, for rows copied by set operations (sources 'carried' and 'moved')."""
    stats: Counter[str] = Counter()
    for source, total, accepted in con.execute(
        "SELECT source, count(*), count(*) FILTER (WHERE accepted) FROM read_parquet($p) GROUP BY source",
        {"p": str(probes)},
    ).fetchall():
        stats.update({source: int(total), "accepted": int(accepted)})
    for rule, n in con.execute(
        "SELECT rule, count(*) FROM read_parquet($v) GROUP BY rule", {"v": str(violations)}
    ).fetchall():
        stats[f"rule:{rule}"] += int(n)
    return stats


def stored_moves_empty(store: StateStore, key: str, scratch: Path) -> bool:
    """Whether the state store holds a moves snapshot with no rows (so an empty one need not be written again)."""
    local = scratch / "stored-moves.parquet"
    return store.fetch(key, local) and pq.read_metadata(local).num_rows == 0


def pair_moves_by_head(con: duckdb.DuckDBPyConnection, probes: Path, target: Path, have_known: bool) -> int:
    """Pair vanished keys with new keys of the same size and the same hash of the bytes the probe read first.

    The listing already paired moves whose provider states a content hash (MD5, or an etag that only repeats for
    identical content); this catches the rest (a local copy-then-delete, a multipart re-upload), at the cost of the
    one head read that probing the new key made anyway. Returns how many moves it wrote to `target`.
    """
    pairs = con.sql("SELECT NULL::VARCHAR AS old_key, NULL::VARCHAR AS new_key WHERE false")
    if have_known:
        pairs = con.sql(
            """
            WITH fresh AS (
                SELECT c.key, c.size, r.head_sha256 FROM changes c JOIN read_parquet($probes) r
                USING (key) WHERE c.change = 'new' AND c.moved_from IS NULL AND r.source = 'probed'
                AND r.head_sha256 IS NOT NULL AND r.error IS NULL
            ),
            gone AS (
                SELECT c.key, c.size, p.head_sha256 FROM changes c JOIN p USING (key)
                WHERE c.change = 'deleted' AND c.moved_to IS NULL AND p.head_sha256 IS NOT NULL AND p.error IS NULL
            ),
            f AS (SELECT *, row_number() OVER (PARTITION BY size, head_sha256 ORDER BY key) AS rn FROM fresh),
            g AS (SELECT *, row_number() OVER (PARTITION BY size, head_sha256 ORDER BY key) AS rn FROM gone)
            SELECT g.key AS old_key, f.key AS new_key FROM f JOIN g USING (size, head_sha256, rn)
            """,
            params={"probes": str(probes)},
        )
    with atomic_path(target) as tmp:
        pairs.write_parquet(str(tmp))
    return int(con.execute("SELECT count(*) FROM read_parquet($t)", {"t": str(target)}).fetchall()[0][0])


def reject_name_collisions(con: duckdb.DuckDBPyConnection, probes: Path, violations: Path) -> int:
    """Keep one key per CVAT manifest name: later keys (in key order) with the same name are rejected with a finding.

    CVAT names an image by its key without the extension, so `a.jpg`, `a.JPG` and `a.jpeg` are one name. This is the
    one verdict that depends on other objects, so it runs over the whole probes snapshot once it is written, and
    rewrites the snapshots only when a collision exists. Returns how many keys it rejected.
    """
    collisions = con.execute(
        f"""
        SELECT key, name, taken_by, rank FROM (
            SELECT key, name, first_value(key) OVER w AS taken_by, row_number() OVER w AS rank
            FROM (SELECT key, {NAME_SQL} AS name FROM read_parquet($p) WHERE accepted AND kind IN ('image', 'video'))
            WINDOW w AS (PARTITION BY name ORDER BY key)
        ) WHERE rank > 1
        ORDER BY key
        """,
        {"p": str(probes)},
    ).fetchall()
    if not collisions:
        return 0
    found = [
        {"key": key, **name_collision(key, name, taken_by, rank).__dict__} for key, name, taken_by, rank in collisions
    ]
    con.register("collisions", pa.Table.from_pylist(found, schema=VIOLATIONS_SCHEMA))
    with atomic_path(probes) as tmp:
        con.sql(
            """
            SELECT * REPLACE (
                accepted AND key NOT IN (SELECT key FROM collisions) AS accepted,
                CASE WHEN key IN (SELECT key FROM collisions) THEN NULL ELSE manifest_width END AS manifest_width,
                CASE WHEN key IN (SELECT key FROM collisions) THEN NULL ELSE manifest_height END AS manifest_height)
            FROM read_parquet($p)
            """,
            params={"p": str(probes)},
        ).write_parquet(str(tmp))
    with atomic_path(violations) as tmp:
        con.sql(
            "SELECT * FROM read_parquet($v) UNION ALL SELECT * FROM collisions", params={"v": str(violations)}
        ).write_parquet(str(tmp))
    con.unregister("collisions")
    return len(found)


class _Writer:
    """Judges facts against the profile and writes the probes and violations snapshots."""

    def __init__(
        self, probes: pq.ParquetWriter, violations: pq.ParquetWriter, profile: Profile, checkpoint: Checkpoint
    ) -> None:
        self.probes, self.violations, self.profile, self.checkpoint = probes, violations, profile, checkpoint
        self.judge = judged_by(profile)
        self.rows: list[dict[str, Any]] = []
        self.bad: list[dict[str, Any]] = []
        self.stats: Counter[str] = Counter()
        self.written = 0
        self.thumbnails = ThumbnailCollector()

    def add(self, row: dict[str, Any], facts: MediaFacts, source: str, probed_at: datetime | None) -> bool:
        """Judge and record one object; returns whether it breaks a rule."""
        found = judge(facts, row["key"], self.profile)
        accepted = not found
        width, height = manifest_size(facts, self.profile) if accepted and facts.kind == "image" else (None, None)
        record = {
            "key": row["key"],
            "size": row["size"],
            "etag": row["etag"],
            "last_modified": row["last_modified"],
            "version": row.get("version"),
            "source": source,
            "probed_at": probed_at,
            "accepted": accepted,
            "manifest_width": width,
            "manifest_height": height,
            **facts.to_row(),
            "judged_by": self.judge,
        }
        self.rows.append(record)
        self.written += 1
        if source == "probed":
            self.checkpoint.add(record)
        for v in found:
            self.bad.append({"key": row["key"], **v.__dict__})
            self.stats[f"rule:{v.rule}"] += 1
        self.stats[source] += 1
        self.stats["accepted"] += accepted
        if source == "probed":
            self.stats["bytes_read"] += facts.bytes_read
            self.stats["requests"] += facts.requests
            self.stats["unreadable"] += facts.error is not None
        if len(self.rows) >= BATCH_ROWS:
            self.flush()
        return bool(found)

    def flush(self) -> None:
        if self.rows:
            self.probes.write_table(pa.Table.from_pylist(self.rows, schema=PROBES_SCHEMA))
            self.rows = []
        if self.bad:
            self.violations.write_table(pa.Table.from_pylist(self.bad, schema=VIOLATIONS_SCHEMA))
            self.bad = []


@asset(
    partitions_def=connections_partitions,
    deps=[object_listing],
    group_name="sync",
    kinds={"parquet"},
    description="Facts and rule verdicts for every current object; only new and changed objects are read.",
)
@scrubbed_errors
def media_probes(
    context: AssetExecutionContext, config: ProbeConfig, catalog: CatalogResource, state_store: StateStore
) -> MaterializeResult:
    started = time.monotonic()
    name = context.partition_key
    keys = SnapshotKeys(name)
    conn = catalog.connection(name)
    profile = get_profile(conn.profile)
    judge = judged_by(profile)
    concurrency = config.concurrency or probe_concurrency(conn)
    with state_store.scratch_dir(name, "probes") as scratch:
        changes = scratch / "changes.parquet"
        if not state_store.fetch(keys.changes, changes):
            raise Failure(f"connection '{name}': no listing in the state store; materialize object_listing first")
        checkpoint = Checkpoint(state_store, keys.checkpoint_prefix, scratch, config.checkpoint_rows)
        # --full ignores the last sync's facts, but not the checkpoints of an interrupted run that this one resumes.
        parts = checkpoint.fetch_parts(scratch / "known")
        previous = scratch / "known" / "previous.parquet"
        previous_violations = scratch / "previous-violations.parquet"
        have_previous = not config.full and state_store.fetch(keys.probes, previous)
        have_previous = have_previous and state_store.fetch(keys.violations, previous_violations)
        known = parts + ([previous] if have_previous else [])
        if parts:
            context.log.info(f"'{name}': resuming from {len(parts)} checkpoint part(s) of an interrupted run")

        con = scratch_duckdb(scratch / ".spill")
        probes_path, violations_path = scratch / "probes.parquet", scratch / "violations.parquet"
        moves_path = scratch / "moves.parquet"
        # What this step stores: None where the stored snapshot already is this sync's and is left untouched.
        stored: dict[str, Path | None]
        if have_previous and not parts and snapshot_still_holds(con, changes, previous, judge):
            # Nothing changed since the last sync: its snapshot is this one's, verdicts, collisions and all.
            relabelled = relabel_carried(con, previous, probes_path)
            stats = carried_stats(con, probes_path if relabelled else previous, previous_violations)
            moves = 0
            empty_moves = stored_moves_empty(state_store, keys.moves, scratch)
            if not empty_moves:
                pair_moves_by_head(con, probes_path, moves_path, have_known=False)
            stored = {
                keys.violations: None,
                keys.moves: None if empty_moves else moves_path,
                keys.probes: probes_path if relabelled else None,
            }
            context.log.info(
                f"'{name}': nothing changed since the last sync; facts and verdicts of {stats['carried']} objects "
                "carried forward as they are"
            )
        else:
            stats, moves = _probe_and_carry(
                context, _plan(changes, known, con), conn, profile, checkpoint, concurrency, scratch,
                previous if have_previous else None, previous_violations,
                probes_path, violations_path, moves_path, bool(known),
            )  # fmt: skip
            stored = {keys.violations: violations_path, keys.moves: moves_path, keys.probes: probes_path}
            thumbnails_path = scratch / "thumbnails.parquet"
            previous_thumbnails = scratch / "previous-thumbnails.parquet"
            have_thumbnails = have_previous and state_store.fetch(keys.thumbnails, previous_thumbnails)
            merge_thumbnails(
                con, scratch / "fresh-thumbnails.parquet", previous_thumbnails if have_thumbnails else None,
                probes_path, violations_path, thumbnails_path,
            )  # fmt: skip
            stored[keys.thumbnails] = thumbnails_path
        con.close()
        for key, path in stored.items():
            if path is not None:
                state_store.put(key, path)
    if parts or checkpoint.flushed:
        checkpoint.clear()  # the probes snapshot now holds everything the parts did
    if moves:
        context.log.info(f"'{name}': {moves} move(s) recognised by content where the provider gave no content hash")
    return _result(state_store, name, profile, stats, time.monotonic() - started)


def _probe_and_carry(
    context: AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    conn: Connection,
    profile: Profile,
    checkpoint: Checkpoint,
    concurrency: int,
    scratch: Path,
    previous: Path | None,
    previous_violations: Path,
    probes_path: Path,
    violations_path: Path,
    moves_path: Path,
    have_known: bool,
) -> tuple[Counter[str], int]:
    """Carry what set operations can, probe what is new or changed, judge the rest row by row, and write the probes,
    violations and moves snapshots. Returns the counters and how many moves were recognised by content."""
    name = conn.name
    carried_probes, carried_violations = scratch / "carried.parquet", scratch / "carried-violations.parquet"
    carried = 0
    if previous is not None:
        carried = carry_verdicts(
            con, previous, previous_violations, judged_by(profile), carried_probes, carried_violations
        )
    else:
        con.execute("CREATE TEMP TABLE carried (key VARCHAR)")
    planned = dict(con.execute("SELECT action, count(*) FROM plan GROUP BY action").fetchall())
    to_probe = int(planned.get("probe", 0))
    context.log.info(
        f"'{name}': probing {to_probe} objects ({concurrency} at a time); reusing facts for "
        f"{planned.get('carried', 0)} unchanged and {planned.get('moved', 0)} moved objects"
    )
    fact_cols = ", ".join(f"p.{c}" for c in FACT_COLUMNS)
    fresh_path, fresh_violations = scratch / "fresh.parquet", scratch / "fresh-violations.parquet"
    with (
        pq.ParquetWriter(fresh_path, PROBES_SCHEMA) as probes_out,
        pq.ParquetWriter(fresh_violations, VIOLATIONS_SCHEMA) as violations_out,
    ):
        out = _Writer(probes_out, violations_out, profile, checkpoint)
        if planned.get("carried", 0) + planned.get("moved", 0) > carried:
            # What set operations could not carry: renames (the file name is in the verdict), facts from an
            # interrupted run's checkpoints, verdicts judged under other rules, and keys with a manifest_name finding
            # (it depends on other objects). Judged again, row by row.
            reused = (
                "SELECT plan.key, plan.size, plan.etag, plan.last_modified, plan.version, plan.action, "
                f"p.probed_at, {fact_cols} FROM plan JOIN p ON p.key = plan.facts_key "
                "WHERE plan.action <> 'probe' AND plan.key NOT IN (SELECT key FROM carried) ORDER BY plan.key"
            )
            for row in _batches(con, reused):
                out.add(row, MediaFacts.from_row(row), row["action"], row["probed_at"])
        if to_probe:
            bucket = open_bucket(conn)
            rows = _batches(
                con,
                "SELECT key, size, etag, last_modified, version, previous_error FROM plan WHERE action = 'probe' "
                "ORDER BY key",
            )
            with Progress(context.log, f"probing '{name}'", to_probe) as progress:
                for row, (facts, thumbnail) in probe_all(bucket, rows, concurrency, profile.end_check):
                    facts.error = settle_failure(facts.error, row["previous_error"])
                    if out.add(row, facts, "probed", datetime.now(UTC)):
                        out.thumbnails.add(row["key"], thumbnail)
                    progress.advance()
        out.flush()
    out.thumbnails.write(scratch / "fresh-thumbnails.parquet")
    stats = out.stats
    parts_of: dict[Path, list[Path]] = {probes_path: [], violations_path: []}
    if out.written or not carried:
        parts_of[probes_path].append(fresh_path)
        parts_of[violations_path].append(fresh_violations)
    if carried:
        parts_of[probes_path].append(carried_probes)
        parts_of[violations_path].append(carried_violations)
        stats.update(carried_stats(con, carried_probes, carried_violations))
    for target, sources in parts_of.items():
        if len(sources) == 1:
            sources[0].replace(target)
        else:
            con.read_parquet([str(s) for s in sources], union_by_name=True).write_parquet(str(target))
    # Moves by content pair fresh probes with vanished keys: with nothing probed there is nothing to pair.
    moves = pair_moves_by_head(con, probes_path, moves_path, have_known and stats.get("probed", 0) > 0)
    collided = reject_name_collisions(con, probes_path, violations_path)
    if collided:
        stats["accepted"] -= collided
        stats["rule:manifest_name"] += collided
    return stats, moves


def _result(
    state_store: StateStore, name: str, profile: Profile, stats: Counter[str], elapsed_s: float
) -> MaterializeResult:
    """The step's metadata: what it read, reused and accepted, for the UI and for `bucket-sync` to report.

    Every figure is an int or a rounded float, so Dagster plots it across the partition's materializations; the
    count of each rule is its own value (`violations_<rule>`) for the same reason.
    """
    rule_counts = {rule: stats.get(f"rule:{rule}", 0) for rule in ALL_RULES}
    listing_state = ListingState.load(state_store, name)
    bytes_stored = listing_state.bytes if listing_state else 0
    read = stats.get("bytes_read", 0)
    summary = (
        f"Probed **{stats.get('probed', 0)}** objects ({read:,} bytes read in {stats.get('requests', 0)} requests), "
        f"reused facts for {stats.get('carried', 0)} unchanged and {stats.get('moved', 0)} moved. "
        f"**{stats.get('accepted', 0)}** accepted under profile `{profile.name}`; "
        + ", ".join(f"{r}: {n}" for r, n in rule_counts.items() if n)
    )
    return MaterializeResult(
        metadata={
            "probed": MetadataValue.int(stats.get("probed", 0)),
            "carried": MetadataValue.int(stats.get("carried", 0)),
            "moved": MetadataValue.int(stats.get("moved", 0)),
            "accepted": MetadataValue.int(stats.get("accepted", 0)),
            "unreadable": MetadataValue.int(stats.get("unreadable", 0)),
            "bytes_read": MetadataValue.int(read),
            "requests": MetadataValue.int(stats.get("requests", 0)),
            "bytes_read_per_probe": rounded(read / stats["probed"] if stats.get("probed") else 0.0),
            "objects_per_second": rounded(stats.get("probed", 0) / elapsed_s if elapsed_s > 0 else 0.0),
            "seconds": rounded(elapsed_s, 2),
            **{f"violations_{rule}": MetadataValue.int(n) for rule, n in rule_counts.items()},
            "bytes_stored": MetadataValue.int(bytes_stored),
            "violations_by_rule": counts_table("rule", rule_counts),
            "profile": MetadataValue.text(profile.name),
            "summary": MetadataValue.md(summary),
        }
    )
