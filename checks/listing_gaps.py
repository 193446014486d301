"""`listing_gaps`: the folders a listing could not read, and the objects that kept their last known state for it.

An unreadable folder (a permission, a disk error) says nothing about the files in it. The listing keeps their last
known state rather than tombstoning them; this check makes sure a person hears about it instead of the sync passing
quietly with part of the bucket unseen.
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
from assets.typed_metadata import table
from resources.secrets import scrubbed_errors
from resources.state import StateStore

SHOWN = 20


@asset_check(
    asset=object_listing,
    name="listing_gaps",
    description=(
        "Warns when part of the tree could not be listed (e.g. a folder without read permission); objects under it "
        "keep their last known state until it can be read again."
    ),
    partitions_def=connections_partitions,
)
@scrubbed_errors
def listing_gaps(context: AssetCheckExecutionContext, state_store: StateStore) -> AssetCheckResult:
    state = ListingState.require(state_store, context.partition_key)
    gaps, kept = state.gaps, state.kept_unread
    if gaps:
        description = (
            f"{len(gaps)} folder(s) could not be read; {kept} object(s) under them keep their last known state. "
            "Grant the user that runs Dagster read access, then sync again: " + ", ".join(gaps[:SHOWN])
        )
    else:
        description = "every folder under the prefix was read"
    return AssetCheckResult(
        passed=not gaps,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "unread_folders": table(
                [("folder", "string", "a folder the listing could not read")], [(g,) for g in gaps[:SHOWN]]
            ),
            "unread_folder_count": MetadataValue.int(len(gaps)),
            "objects_kept": MetadataValue.int(kept),
        },
    )
