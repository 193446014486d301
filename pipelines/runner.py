"""Run the sync job for one connection in this process, against a given Dagster instance.

The CLI and the integration tests both go through here, so what a test proves is what `bucket-sync sync` does.
The run is created from the workspace's code location (pipelines/origin.py), as a launch from the UI creates it, and
then executed here by Dagster's own run execution: so it is listed under the job and on the Overview, and the UI can
re-execute it. Only who executes it differs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, EventLogEntry
from dagster._core.execution.execution_result import ExecutionResult
from dagster._core.storage.tags import PARTITION_NAME_TAG

from assets.overlap import process_tags, reap_dead_runs
from assets.partitions import connections_partitions
from pipelines.instance import initialize_index_pool

#: The class name Dagster puts before a step error's text ("dagster._core.definitions.events.Failure: "): it names
#: Dagster's wrapper, not the cause, so the sentence a person reads starts after it.
_WRAPPER_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)+[A-Za-z_]\w*: ")


def cause_sentence(message: str) -> str:
    """A step error's message as one line that starts with its cause (see resources/secrets.py, scrubbed_errors)."""
    return " ".join(_WRAPPER_PREFIX.sub("", message.strip(), count=1).split())


@dataclass
class SyncOutcome:
    result: ExecutionResult
    blocked_by: str | None = None
    #: One sentence per failed step, cause first (and its fix, where the error knows one).
    failures: list[str] = field(default_factory=list)
    #: The steps that failed, in the order of `failures`.
    failed_steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.success and self.blocked_by is None

    @property
    def run_id(self) -> str:
        return self.result.run_id


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
    on_event: Callable[[EventLogEntry], None] | None = None,
    event_batch: str | None = None,
) -> SyncOutcome:
    """Materialize the sync assets (and their checks) for partition `name`. Never raises for a failed step.

    `only` names a subset of the assets (e.g. ["object_listing"]) for tests that change the bucket between steps;
    `probe` overrides media_probes' config (concurrency, checkpoint_rows); `index_wait_s` how long the index step
    waits for another process's lock on the index before it fails; `event_batch` the id of a stored EventBatch to
    sync as a delta (assets/delta.py), tagged `bucket-sync/sync: delta` as the sensor's runs are. `on_event` hears
    every event of the run as the instance stores it (the CLI draws its live view from them), from the first one on.
    """
    from dagster._core.execution.api import execute_run
    from dagster._core.utils import make_new_run_id

    from pipelines.origin import located_job

    # A run of this host that was killed must not hold the index pool slot this run is about to wait for.
    reap_dead_runs(instance)
    initialize_index_pool(instance)
    if not instance.has_dynamic_partition(connections_partitions.name, name):
        instance.add_dynamic_partitions(connections_partitions.name, [name])
    located = located_job("sync_connection")
    job_def = located.job.get_definition()
    run_id = make_new_run_id()
    run = instance.create_run_for_job(
        job_def=job_def,
        run_id=run_id,
        run_config=sync_run_config(
            full=full,
            allow_collapse=allow_collapse,
            log_level=log_level,
            probe=probe,
            index_wait_s=index_wait_s,
            event_batch=event_batch,
        ),
        tags={
            **job_def.run_tags,
            PARTITION_NAME_TAG: name,
            **process_tags(run_id),
            **({"bucket-sync/sync": "delta"} if event_batch else {}),
            **(tags or {}),
        },
        asset_selection=frozenset(AssetKey(a) for a in only) if only else None,
        remote_job_origin=located.remote_origin,
        job_code_origin=located.job.get_python_origin(),
    )
    if on_event is not None:
        instance.add_event_listener(run_id, on_event)
    result = execute_run(located.job, run, instance)
    outcome = SyncOutcome(result)
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.check_name == "listing_collapse" and not evaluation.passed:
                outcome.blocked_by = evaluation.description or "listing_collapse"
        elif event.event_type == DagsterEventType.STEP_FAILURE and event.event_specific_data.error:
            outcome.failures.append(cause_sentence(str(event.event_specific_data.error.message)))
            outcome.failed_steps.append(event.step_key or "")
    return outcome
