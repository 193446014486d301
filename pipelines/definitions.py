"""The code location: every asset, check, job, sensor and resource, assembled in one place."""

from dagster import Definitions

from assets.index import media_index
from assets.listing import object_listing
from assets.manifest import cvat_manifest
from assets.probes import media_probes
from checks.listing_collapse import listing_collapse
from checks.listing_gaps import listing_gaps
from checks.media_rules import media_rules
from pipelines.connection_test import test_connection_job
from pipelines.jobs import sync_job
from pipelines.schedules import build_connection_schedules
from pipelines.sensors import bucket_changes, connection_registry
from resources.catalog import CatalogResource
from resources.index import MediaIndex
from resources.state import StateStore

defs = Definitions(
    assets=[object_listing, media_probes, cvat_manifest, media_index],
    asset_checks=[listing_collapse, listing_gaps, media_rules],
    jobs=[sync_job, test_connection_job],
    sensors=[connection_registry, bucket_changes],
    schedules=build_connection_schedules(),
    resources={"catalog": CatalogResource(), "state_store": StateStore(), "index": MediaIndex()},
)
