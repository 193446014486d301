"""Jobs: what a person launches from the UI, and what sensors and schedules request."""

from dagster import AssetSelection, define_asset_job

sync_job = define_asset_job(
    name="sync_connection",
    selection=AssetSelection.groups("sync"),
    description=(
        "List, probe, judge, write the CVAT manifest and index one connection (pick it as the partition). "
        "Run config: media_probes.config.full re-probes everything; object_listing.config.allow_collapse lets a "
        "mass deletion through the listing_collapse check."
    ),
    tags={"bucket-sync/kind": "sync"},
)
