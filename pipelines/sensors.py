"""Sensors: keep partitions in step with the catalog, and notice bucket changes for connections that ask for it."""

import json
from collections import Counter
from typing import Any

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.listing import fingerprint, media_only
from assets.overlap import active_syncs, reap_dead_runs
from assets.partitions import connections_partitions
from assets.snapshots import BaselineState
from pipelines.jobs import sync_job
from resources.bucket import BucketError
from resources.catalog import CatalogError
from resources.catalog_resource import CatalogResource
from resources.providers import open_bucket
from resources.secrets import scrub
from resources.state import StateStore

#: How many keys the change sensor lists per watched connection per tick. A bucket larger than this is walked over
#: several ticks, so one evaluation stays well inside the sensor timeout however big the bucket is.
KEYS_PER_TICK = 10_000
PAGE_SIZE = 1000


def sync_in_flight(instance: DagsterInstance, name: str) -> bool:
    """A sync of this connection is queued or running: requesting another would only queue behind it."""
    return bool(active_syncs(instance, name))


@sensor(
    name="connection_registry",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Adds every catalog connection as a partition, and removes the partitions of connections no longer in the "
        "catalog, so the asset graph shows what the catalog holds; and frees the index pool slots of runs whose "
        "process died. Removing an entry never deletes its runs or its index rows: `bucket-sync status` shows it as "
        "detached, and adding it back brings its partition back (sensors never write the index)."
    ),
)
def connection_registry(context: SensorEvaluationContext, catalog: CatalogResource) -> SensorResult | SkipReason:
    reaped = reap_dead_runs(context.instance)
    if reaped:
        context.log.info(f"marked {len(reaped)} run(s) whose process died as failed: {', '.join(reaped)}")
    try:
        names = sorted(catalog.load().connections)
    except CatalogError as exc:
        return SkipReason(f"catalog is invalid, partitions left as they are:\n{exc}")
    known = set(context.instance.get_dynamic_partitions(connections_partitions.name))
    added = [n for n in names if n not in known]
    # A partition of a connection that left the catalog (or was synced once with a scratch catalog) would stay in the
    # live view for good, red if its last run failed. Dropping the partition is said once, here; its run history
    # and its index rows stay.
    detached = sorted(known - set(names))
    if not added and not detached:
        return SkipReason(f"all {len(names)} catalog connections are partitions already")
    requests = []
    if added:
        context.log.info(f"adding partitions: {', '.join(added)}")
        requests.append(connections_partitions.build_add_request(added))
    if detached:
        context.log.info(
            f"detached (no longer in the catalog): {', '.join(detached)}; their partitions leave the asset graph, "
            "their runs and index rows are kept"
        )
        requests.append(connections_partitions.build_delete_request(detached))
    return SensorResult(dynamic_partitions_requests=requests)


@sensor(
    name="bucket_changes",
    job=sync_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"For connections with `watch: true`: pages through the listing ({KEYS_PER_TICK} keys per connection per "
        "tick, resuming across ticks) and requests a sync when it differs from the last synced listing. The run key "
        "is derived from what it saw, so the same change never starts two runs."
    ),
)
def bucket_changes(
    context: SensorEvaluationContext, catalog: CatalogResource, state_store: StateStore
) -> SensorResult | SkipReason:
    try:
        watched = [c for c in catalog.load().connections.values() if c.watch]
    except CatalogError as exc:
        return SkipReason(f"catalog is invalid:\n{exc}")
    if not watched:
        return SkipReason("no connection has `watch: true`")
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    requests: list[RunRequest] = []
    notes: list[str] = []
    for conn in watched:
        state = cursor.get(conn.name) or {"token": None, "count": 0, "digest": 0}
        try:
            bucket = open_bucket(conn)
            budget = KEYS_PER_TICK
            done = False
            while budget > 0 and not done:
                batch, token = bucket.list_page(conn.prefix, state["token"], min(PAGE_SIZE, budget))
                budget -= max(batch.num_rows, 1)
                count, digest = fingerprint(media_only(batch, conn, Counter()))
                state = {
                    "token": token,
                    "count": state["count"] + count,
                    "digest": (state["digest"] + digest) % 2**64,
                }
                done = token is None
        except (BucketError, OSError) as exc:
            notes.append(f"{conn.name}: listing failed, will retry next tick: {scrub(str(exc))}")
            cursor.pop(conn.name, None)
            continue
        if not done:
            cursor[conn.name] = state
            notes.append(f"{conn.name}: {state['count']} keys seen so far, continuing next tick")
            continue
        cursor.pop(conn.name, None)  # the pass is complete: the next tick starts a fresh one
        seen = (state["count"], state["digest"])
        baseline = BaselineState.load(state_store, conn.name)
        synced = baseline.fingerprint if baseline else None
        if seen == synced:
            notes.append(f"{conn.name}: unchanged ({seen[0]} objects)")
        elif sync_in_flight(context.instance, conn.name):
            notes.append(f"{conn.name}: changed, but a sync is already queued or running")
        else:
            notes.append(f"{conn.name}: changed ({synced[0] if synced else 0} -> {seen[0]} objects), sync requested")
            requests.append(
                RunRequest(
                    run_key=f"{conn.name}:{seen[0]}:{seen[1]:016x}",
                    partition_key=conn.name,
                    tags={"bucket-sync/trigger": "bucket_changes"},
                )
            )
    context.update_cursor(json.dumps(cursor))
    for note in notes:
        context.log.info(note)
    if not requests:
        return SkipReason("; ".join(notes) or "nothing to do")
    return SensorResult(run_requests=requests)
