"""Sensors that keep the Dagster partitions in step with the catalog."""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from assets.partitions import connections_partitions
from resources.catalog import CatalogError, CatalogResource


@sensor(
    name="connection_registry",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds every catalog connection as a partition. Removing an entry never deletes what is indexed.",
)
def connection_registry(context: SensorEvaluationContext, catalog: CatalogResource) -> SensorResult | SkipReason:
    try:
        names = set(catalog.load().connections)
    except CatalogError as exc:
        return SkipReason(f"catalog is invalid, partitions left as they are:\n{exc}")
    known = set(context.instance.get_dynamic_partitions(connections_partitions.name))
    added = sorted(names - known)
    if not added:
        return SkipReason(f"all {len(names)} catalog connections are partitions already")
    context.log.info(f"adding partitions: {', '.join(added)}")
    return SensorResult(dynamic_partitions_requests=[connections_partitions.build_add_request(added)])
