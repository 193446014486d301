"""`media_index`: fold the sync into the DuckDB index, then make its listing the baseline for the next diff.

The baseline moves only after the index has committed, so a sync that fails or is blocked anywhere before this
point leaves the next sync diffing against the last state the index really holds.
"""

import json
import shutil
from datetime import datetime

import duckdb
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.listing import object_listing
from assets.partitions import connections_partitions
from assets.probes import media_probes
from resources.catalog import CatalogResource, Connection
from resources.index import MediaIndex, SyncCounts
from resources.secrets import scrubbed_errors
from resources.storage import SyncHome, atomic_path


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
    deps=[object_listing, media_probes],
    group_name="sync",
    kinds={"duckdb"},
    pool="duckdb_index",
    description="The DuckDB index: objects (with tombstones and moves), media facts, and one syncs row per run.",
)
@scrubbed_errors
def media_index(
    context: AssetExecutionContext, catalog: CatalogResource, home: SyncHome, index: MediaIndex
) -> MaterializeResult:
    name = context.partition_key
    conn = catalog.connection(name)
    state = json.loads(home.snapshot(name, "state").read_text())
    probes, violations = home.snapshot(name, "probes"), home.snapshot(name, "violations")
    con = duckdb.connect()
    probed, carried, accepted, bytes_read, requests = con.execute(
        f"""
        SELECT count(*) FILTER (WHERE source = 'probed'), count(*) FILTER (WHERE source <> 'probed'),
               count(*) FILTER (WHERE accepted),
               coalesce(sum(bytes_read) FILTER (WHERE source = 'probed'), 0),
               coalesce(sum(requests) FILTER (WHERE source = 'probed'), 0)
        FROM read_parquet('{probes}')
        """
    ).fetchone()
    violation_count = con.execute(f"SELECT count(*) FROM read_parquet('{violations}')").fetchone()[0]
    moves = home.snapshot(name, "moves")
    late_moves = int(con.execute(f"SELECT count(*) FROM read_parquet('{moves}')").fetchone()[0])
    con.close()
    full = bool(context.run.run_config.get("ops", {}).get("media_probes", {}).get("config", {}).get("full", False))
    counts = SyncCounts(
        connection=name,
        run_id=context.run.run_id,
        started_at=datetime.fromisoformat(state["started_at"]),
        full_resync=full,
        listed=state["listed"],
        new=state["new"] - late_moves,
        changed=state["changed"],
        unchanged=state["unchanged"],
        deleted=state["deleted"] - late_moves,
        moved=state["moved"] + late_moves,
        probed=int(probed),
        carried=int(carried),
        accepted=int(accepted),
        violations=int(violation_count),
        bytes_stored=int(state.get("bytes", 0)),
        bytes_read=int(bytes_read),
        requests=int(requests),
    )
    index.apply_sync(connection_row(conn), home.snapshot(name, "changes"), probes, moves, counts)
    with atomic_path(home.snapshot(name, "baseline")) as tmp:
        shutil.copyfile(home.snapshot(name, "listing"), tmp)
    context.log.info(f"'{name}': index updated at {index.file}")
    return MaterializeResult(
        metadata={
            "listed": MetadataValue.int(counts.listed),
            "probed": MetadataValue.int(counts.probed),
            "accepted": MetadataValue.int(counts.accepted),
            "violations": MetadataValue.int(counts.violations),
            "deleted": MetadataValue.int(counts.deleted),
            "moved": MetadataValue.int(counts.moved),
            "index": MetadataValue.path(str(index.file)),
        }
    )
