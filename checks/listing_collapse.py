"""`listing_collapse`: the one blocking check. A listing that lost more than half of the last good one stops the sync.

A wrong prefix, a revoked permission or an outage looks exactly like a mass deletion from the listing's side. Letting
it through would tombstone the index and shrink the manifest, so a person must say it is real.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from assets.listing import object_listing
from assets.partitions import connections_partitions
from assets.snapshots import ListingState
from resources.secrets import scrubbed_errors
from resources.state import StateStore

HOW_TO_ALLOW = (
    "If the deletion is real, re-run with run config `ops: {object_listing: {config: {allow_collapse: true}}}` "
    "(Launchpad) or `bucket-sync sync NAME --allow-collapse`."
)


def collapsed(listed: int, baseline: int) -> bool:
    """More than half of the last good listing is gone (all of it included)."""
    return baseline > 0 and listed * 2 < baseline


@asset_check(
    asset=object_listing,
    name="listing_collapse",
    description="Blocks the sync when the listing lost more than half of the last good one. " + HOW_TO_ALLOW,
    partitions_def=connections_partitions,
    blocking=True,
)
@scrubbed_errors
def listing_collapse(context: AssetCheckExecutionContext, state_store: StateStore) -> AssetCheckResult:
    state = ListingState.require(state_store, context.partition_key)
    listed, baseline = state.listed, state.baseline_listed
    is_collapse = collapsed(listed, baseline)
    allowed = state.allow_collapse
    if not is_collapse:
        description = f"listing holds {listed} objects; the last good one held {baseline}"
    elif allowed:
        description = f"listing fell from {baseline} to {listed} objects; let through by allow_collapse"
    else:
        description = f"listing fell from {baseline} to {listed} objects; sync blocked. {HOW_TO_ALLOW}"
    return AssetCheckResult(
        passed=not is_collapse or allowed,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "listed": MetadataValue.int(listed),
            "last_good": MetadataValue.int(baseline),
            "allowed": MetadataValue.bool(allowed),
        },
    )
