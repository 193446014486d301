"""`quota`: how far over its `max_objects` / `max_bytes` a connection's bucket is, and how to raise the quota.

A quota must never stop a sync silently, as a platform's object cap does: the sync indexes what fits (assets/quota.py)
and this check says, on every sync, how many objects and bytes were left out, which ones come first, and where to
raise the limit. It warns, not blocks: what was admitted is a whole, consistent sync.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset_check,
)

from assets.listing import object_listing
from assets.partitions import connections_partitions
from assets.quota import QuotaState
from assets.snapshots import ListingState
from resources.catalog_resource import CatalogResource
from resources.secrets import scrubbed_errors
from resources.state import StateStore

SKIPPED_SCHEMA = TableSchema(columns=[TableColumn("key", "string"), TableColumn("size", "int")])


def quota_description(state: QuotaState, connection: str, catalog_path: str) -> str:
    """What a person reads: the overrun with its numbers, or the use against the limits."""
    limits = [name for name in ("max_objects", "max_bytes") if getattr(state, name) is not None]
    if not limits:
        return f"no quota set for connection '{connection}' (max_objects / max_bytes in {catalog_path})"
    if not state.skipped and state.exceeded:
        return (
            f"connection '{connection}' holds {state.admitted} objects ({state.admitted_bytes:,} bytes), over "
            f"{' and '.join(state.exceeded)}: all were indexed before the quota was lowered and are kept; new objects "
            f"are skipped until some are deleted or the quota in {catalog_path} is raised"
        )
    if not state.skipped:
        used = []
        if state.max_objects is not None:
            used.append(f"{state.admitted} of max_objects={state.max_objects}")
        if state.max_bytes is not None:
            used.append(f"{state.admitted_bytes:,} bytes of max_bytes={state.max_bytes}")
        return f"connection '{connection}' is within its quota: " + ", ".join(used)
    over = state.exceeded
    fields = " / ".join(f"`{limit.split('=')[0]}`" for limit in over)
    return (
        f"{state.skipped} objects ({state.skipped_bytes:,} bytes) over {' and '.join(over)} for connection "
        f"'{connection}': raise {fields} in {catalog_path} or narrow `prefix`/`include`"
    )


def quota_metadata(state: QuotaState) -> dict[str, MetadataValue]:
    """Typed figures: the use against each limit set, and the first skipped keys as a table."""
    metadata: dict[str, MetadataValue] = {
        "admitted": MetadataValue.int(state.admitted),
        "admitted_bytes": MetadataValue.int(state.admitted_bytes),
        "over_quota": MetadataValue.int(state.skipped),
        "over_quota_bytes": MetadataValue.int(state.skipped_bytes),
    }
    if state.max_objects is not None:
        metadata["max_objects"] = MetadataValue.int(state.max_objects)
    if state.max_bytes is not None:
        metadata["max_bytes"] = MetadataValue.int(state.max_bytes)
    if state.examples:
        records = [TableRecord({"key": key, "size": size}) for key, size in state.examples]
        metadata["first_skipped"] = MetadataValue.table(records, schema=SKIPPED_SCHEMA)
    return metadata


@asset_check(
    asset=object_listing,
    name="quota",
    description=(
        "Warns when the bucket holds more than the connection's max_objects / max_bytes: the objects over it are "
        "listed and recorded in the index's `skipped` table, but not probed or indexed. Says how far over, and where "
        "to raise the quota."
    ),
    partitions_def=connections_partitions,
)
@scrubbed_errors
def quota(context: AssetCheckExecutionContext, catalog: CatalogResource, state_store: StateStore) -> AssetCheckResult:
    name = context.partition_key
    state = ListingState.require(state_store, name).quota
    return AssetCheckResult(
        passed=not state.skipped,
        severity=AssetCheckSeverity.WARN,
        description=quota_description(state, name, catalog.resolved_path),
        metadata=quota_metadata(state),
    )
