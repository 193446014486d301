"""One schedule per catalog connection that sets `schedule:` (a cron expression), built when the code location loads.

Schedules are Dagster definitions, so a new or changed cron in the catalog takes effect when the code location is
reloaded (the UI's "Reload" button, or a redeploy); partitions, by contrast, follow the catalog without a reload.
"""

import logging

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from pipelines.jobs import sync_job
from pipelines.sensors import sync_in_flight
from resources.catalog import CatalogError, Connection, default_catalog_path, load_catalog

log = logging.getLogger(__name__)


def schedule_name(connection: str) -> str:
    return f"sync_{connection.replace('-', '_')}"


def build_connection_schedule(conn: Connection) -> ScheduleDefinition:
    @schedule(
        name=schedule_name(conn.name),
        cron_schedule=conn.schedule or "",
        job=sync_job,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Syncs connection '{conn.name}' on the catalog's cron `{conn.schedule}`.",
    )
    def _schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        if sync_in_flight(context.instance, conn.name):
            return SkipReason(f"a sync of '{conn.name}' is already queued or running")
        # One run per connection per tick: the tick's time is the run key, so a retried tick never runs twice.
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
        return RunRequest(
            run_key=f"{conn.name}@{tick}", partition_key=conn.name, tags={"bucket-sync/trigger": "schedule"}
        )

    return _schedule


def build_connection_schedules(catalog_path: str | None = None) -> list[ScheduleDefinition]:
    """Schedules for the catalog's connections. An unreadable catalog yields none rather than breaking the location."""
    try:
        catalog = load_catalog(catalog_path or default_catalog_path())
    except CatalogError as exc:
        log.warning("no connection schedules: %s", exc)
        return []
    return [build_connection_schedule(c) for c in catalog.connections.values() if c.schedule]
