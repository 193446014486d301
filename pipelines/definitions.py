"""The code location: every asset, check, job, sensor and resource, assembled in one place.

The executor comes from the deployment (`BUCKET_SYNC_EXECUTOR`, pipelines/executor.py): in-process unless it says
otherwise, so a sync launched from the UI imports the cloud SDKs once, not once per step.
"""

from dagster import Definitions

from assets.index import media_index
from assets.listing import object_listing
from assets.manifest import cvat_manifest
from assets.probes import media_probes
from checks.cors_audit import cors_audit
from checks.listing_collapse import listing_collapse
from checks.listing_gaps import listing_gaps
from checks.media_rules import media_rules
from checks.quota import quota
from pipelines.connection_test import test_connection_job
from pipelines.event_sensor import bucket_events
from pipelines.executor import chosen_executor
from pipelines.jobs import sync_job
from pipelines.notifications import sync_failure_notifications, sync_success_notifications
from pipelines.schedules import build_connection_schedules
from pipelines.sensors import bucket_changes, connection_registry
from resources.catalog_resource import CatalogResource
from resources.index_resource import MediaIndex
from resources.state import StateStore


def build_definitions() -> Definitions:
    """Everything the code location serves, with the executor that the environment chooses at load time."""
    return Definitions(
        assets=[object_listing, media_probes, cvat_manifest, media_index],
        asset_checks=[listing_collapse, listing_gaps, media_rules, cors_audit, quota],
        jobs=[sync_job, test_connection_job],
        sensors=[
            connection_registry,
            bucket_changes,
            bucket_events,
            sync_failure_notifications,
            sync_success_notifications,
        ],
        schedules=build_connection_schedules(),
        executor=chosen_executor(),
        resources={"catalog": CatalogResource(), "state_store": StateStore(), "index": MediaIndex()},
    )


defs = build_definitions()
