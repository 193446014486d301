"""`media_index`: fold the sync into the DuckDB index in one transaction, then publish it (assets/publish.py).

The baseline and the manifest move only after the index has committed, so a sync that fails or is blocked anywhere
before this point leaves the next sync diffing against the last state the index really holds, and people reading the
last state that was whole.
"""

from dataclasses import replace

import duckdb
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.bucket_manifests import publish_to_bucket
from assets.listing import object_listing
from assets.manifest import cvat_manifest
from assets.partitions import connections_partitions
from assets.probes import media_probes
from assets.progress import Progress
from assets.publish import publish
from assets.snapshots import ListingState, SnapshotKeys
from media.rules import get_profile
from resources.catalog import Connection
from resources.catalog_resource import CatalogResource
from resources.index import SyncCounts, SyncSnapshot
from resources.index_resource import MediaIndex
from resources.secrets import scrub, scrubbed_errors
from resources.state import StateStore


def connection_row(conn: Connection) -> dict[str, str]:
    """What the index may know of a connection: where it points, never how it authenticates."""
    location = conn.root if conn.provider == "local" else conn.bucket
    return {
        "name": conn.name,
        "provider": conn.provider,
        "location": location or "",
        "prefix": conn.prefix,
        "profile": conn.profile,
    }


@asset(
    partitions_def=connections_partitions,
    deps=[object_listing, media_probes, cvat_manifest],
    group_name="sync",
    kinds={"duckdb"},
    pool="duckdb_index",
    description=(
        "The DuckDB index: objects (with tombstones and moves), media facts, violations and one syncs row per run, "
        "committed in one transaction; the run's manifest and baseline are published only after it commits."
    ),
)
@scrubbed_errors
def media_index(
    context: AssetExecutionContext, catalog: CatalogResource, state_store: StateStore, index: MediaIndex
) -> MaterializeResult:
    name = context.partition_key
    keys = SnapshotKeys(name)
    conn = catalog.connection(name)
    state = ListingState.require(state_store, name)
    with state_store.scratch_dir(name, "index") as scratch:
        snapshot = SyncSnapshot(
            changes=scratch / "changes.parquet",
            probes=scratch / "probes.parquet",
            moves=scratch / "moves.parquet",
            violations=scratch / "violations.parquet",
        )
        for key, path in (
            (keys.changes, snapshot.changes),
            (keys.probes, snapshot.probes),
            (keys.moves, snapshot.moves),
            (keys.violations, snapshot.violations),
        ):
            if not state_store.fetch(key, path):
                raise Failure(f"connection '{name}': {key} is missing from the state store; run the whole sync again")
        # A listing made before quotas existed wrote no skipped snapshot: it skipped nothing.
        skipped = scratch / "skipped.parquet"
        if state_store.fetch(keys.skipped, skipped):
            snapshot = replace(snapshot, skipped=skipped)
        with Progress(context.log, f"writing the index for '{name}'", total=None, heartbeat=True):
            counts, new_violations = _apply(context, conn, catalog, index, state, snapshot)
    publish(state_store, name, context.run.run_id)
    context.log.info(f"'{name}': index updated at {index.location}; manifest published to {state_store.location}")
    in_bucket: dict[str, MetadataValue] = {}
    if conn.publish_manifest:  # the one write into the bucket, after the commit: see assets/bucket_manifests.py
        outcome = publish_to_bucket(state_store, conn, context.log)
        in_bucket = {
            "bucket_manifests_written": MetadataValue.json(outcome.written),
            "bucket_manifests_unchanged": MetadataValue.int(len(outcome.unchanged)),
        }
    return MaterializeResult(
        metadata={
            **in_bucket,
            **_report_link(context, name, index, state_store),
            "listed": MetadataValue.int(counts.listed),
            "probed": MetadataValue.int(counts.probed),
            "accepted": MetadataValue.int(counts.accepted),
            "violations": MetadataValue.int(counts.violations),
            # Read by the notification sensor (pipelines/notifications.py): violations the previous sync did not have.
            "new_violations": MetadataValue.int(new_violations),
            "deleted": MetadataValue.int(counts.deleted),
            "moved": MetadataValue.int(counts.moved),
            "index": MetadataValue.text(index.location),
            "sync_kind": MetadataValue.text(counts.sync_kind),
            "event_keys": MetadataValue.int(counts.event_keys),
        }
    )


def _report_link(
    context: AssetExecutionContext, name: str, index: MediaIndex, state_store: StateStore
) -> dict[str, MetadataValue]:
    """Render the connection's visual report into the state store and link it from the sync's metadata: a local
    path where the store is a folder, its URL otherwise. A report that cannot be made never fails a committed sync."""
    from pipelines.report import write_report

    try:
        written = write_report(name, index, state_store)
    except Exception as exc:
        context.log.warning(f"'{name}': the visual report could not be written: {scrub(str(exc))}")
        return {}
    link = MetadataValue.path(str(written.local_path)) if written.local_path else MetadataValue.url(written.location)
    return {"report": link, "report_thumbnails": MetadataValue.int(written.thumbnails)}


def _apply(
    context: AssetExecutionContext,
    conn: Connection,
    catalog: CatalogResource,
    index: MediaIndex,
    state: ListingState,
    snapshot: SyncSnapshot,
) -> tuple[SyncCounts, int]:
    """Count what the sync did from its snapshots, and fold it into the index in one transaction. Returns the counts
    and how many of the sync's violations are new (not reported by the previous sync)."""
    name = conn.name
    con = duckdb.connect()
    probed, carried, accepted, bytes_read, requests = con.execute(
        """
        SELECT count(*) FILTER (WHERE source = 'probed'), count(*) FILTER (WHERE source <> 'probed'),
               count(*) FILTER (WHERE accepted),
               coalesce(sum(bytes_read) FILTER (WHERE source = 'probed'), 0),
               coalesce(sum(requests) FILTER (WHERE source = 'probed'), 0)
        FROM read_parquet($p)
        """,
        {"p": str(snapshot.probes)},
    ).fetchone()
    rules = get_profile(conn.profile).rules
    violation_count = con.execute(
        "SELECT count(*) FROM read_parquet($p) WHERE list_contains($rules, rule)",
        {"p": str(snapshot.violations), "rules": list(rules)},
    ).fetchone()[0]
    late_moves = int(con.execute("SELECT count(*) FROM read_parquet($p)", {"p": str(snapshot.moves)}).fetchone()[0])
    con.close()
    full = bool(context.run.run_config.get("ops", {}).get("media_probes", {}).get("config", {}).get("full", False))
    counts = SyncCounts(
        connection=name,
        run_id=context.run.run_id,
        started_at=state.started_at,
        full_resync=full,
        listed=state.listed,
        new=state.new - late_moves,
        changed=state.changed,
        unchanged=state.unchanged,
        deleted=state.deleted - late_moves,
        moved=state.moved + late_moves,
        probed=int(probed),
        carried=int(carried),
        accepted=int(accepted),
        violations=int(violation_count),
        bytes_stored=state.bytes,
        bytes_read=int(bytes_read),
        requests=int(requests),
        sync_kind=state.sync_kind,
        event_keys=state.event_keys,
    )
    catalog_names = sorted(catalog.load().connections)
    folded = index.apply_sync(connection_row(conn), snapshot, rules, counts, attached=catalog_names)
    return counts, folded.new_violations
