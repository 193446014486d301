"""Run the sync job for one connection in this process, against a given Dagster instance.

The CLI and the integration tests both go through here, so what a test proves is what `bucket-sync sync` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, ExecuteInProcessResult

from assets.overlap import process_tags, reap_dead_runs
from assets.partitions import connections_partitions


@dataclass
class SyncOutcome:
    result: ExecuteInProcessResult
    blocked_by: str | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.success and self.blocked_by is None


def sync_run_config(
    *,
    full: bool = False,
    allow_collapse: bool = False,
    log_level: str = "INFO",
    probe: dict[str, Any] | None = None,
    index_wait_s: float | None = None,
    event_batch: str | None = None,
) -> dict[str, Any]:
    """The sync job's run config. `event_batch` makes it a delta sync of the keys that stored batch names (the same
    config the bucket_events sensor requests runs with)."""
    listing: dict[str, Any] = {"allow_collapse": allow_collapse}
    if event_batch is not None:
        listing["event_batch"] = event_batch
    config: dict[str, Any] = {
        "ops": {
            "object_listing": {"config": listing},
            "media_probes": {"config": {"full": full, **(probe or {})}},
        },
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    if index_wait_s is not None:
        config["resources"] = {"index": {"config": {"lock_timeout_s": index_wait_s}}}
    return config


def run_sync(
    name: str,
    instance: DagsterInstance,
    *,
    full: bool = False,
    allow_collapse: bool = False,
    log_level: str = "INFO",
    tags: dict[str, str] | None = None,
    only: Sequence[str] | None = None,
    probe: dict[str, Any] | None = None,
    index_wait_s: float | None = None,
    event_batch: str | None = None,
) -> SyncOutcome:
    """Materialize the sync assets (and their checks) for partition `name`. Never raises for a failed step.

    `only` names a subset of the assets (e.g. ["object_listing"]) for tests that change the bucket between steps;
    `probe` overrides media_probes' config (concurrency, checkpoint_rows); `index_wait_s` how long the index step
    waits for another process's lock on the index before it fails; `event_batch` the id of a stored EventBatch to
    sync as a delta (assets/delta.py), tagged `bucket-sync/sync: delta` as the sensor's runs are.
    """
    from pipelines.definitions import defs

    # A run of this host that was killed must not hold the index pool slot this run is about to wait for.
    reap_dead_runs(instance)
    if not instance.has_dynamic_partition(connections_partitions.name, name):
        instance.add_dynamic_partitions(connections_partitions.name, [name])
    result = defs.resolve_job_def("sync_connection").execute_in_process(
        partition_key=name,
        instance=instance,
        run_config=sync_run_config(
            full=full,
            allow_collapse=allow_collapse,
            log_level=log_level,
            probe=probe,
            index_wait_s=index_wait_s,
            event_batch=event_batch,
        ),
        raise_on_error=False,
        tags={**process_tags(), **({"bucket-sync/sync": "delta"} if event_batch else {}), **(tags or {})},
        asset_selection=[AssetKey(a) for a in only] if only else None,
    )
    outcome = SyncOutcome(result)
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.check_name == "listing_collapse" and not evaluation.passed:
                outcome.blocked_by = evaluation.description or "listing_collapse"
        elif event.event_type == DagsterEventType.STEP_FAILURE and event.event_specific_data.error:
            outcome.failures.append(str(event.event_specific_data.error.message).strip())
    return outcome
