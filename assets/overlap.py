"""One sync per connection at a time, and no connection (nor the index pool) wedged by a sync whose process died.

Runs launched by the daemon or the UI are watched by Dagster's run monitoring (enabled in the instance config), which
fails them when their worker dies, and the daemon frees the pool slots of finished runs
(`free_slots_after_run_end_seconds`). Runs executed in process (`bucket-sync sync`, tests) have no worker to watch
and no daemon behind them, so they carry their host and PID as tags: `reap_dead_runs` marks a run with those tags
whose process no longer exists as failed, and frees every pool slot still claimed by a run that has ended. Without
it, a SIGKILL while `media_index` holds the `duckdb_index` slot would block every later sync of every connection.
The tags name the run they were made for too: a re-execution from the UI copies its parent's tags, and its own worker,
not the CLI process that ran the parent, is what tells whether it lives.
"""

import os
import socket

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.storage.tags import PARTITION_NAME_TAG

HOST_TAG = "bucket-sync/host"
PID_TAG = "bucket-sync/pid"
RUN_TAG = "bucket-sync/pid-of-run"

ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def process_tags(run_id: str | None = None) -> dict[str, str]:
    """Tags that let a later run tell whether this in-process run (`run_id`, when known) is still alive."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    return {**tags, RUN_TAG: run_id} if run_id else tags


def _process_gone(run: DagsterRun) -> bool:
    host, pid, owner = run.tags.get(HOST_TAG), run.tags.get(PID_TAG), run.tags.get(RUN_TAG)
    if host != socket.gethostname() or not (pid and pid.isdigit()):
        return False  # not ours to judge: another machine, or a run the daemon's monitoring watches
    if owner is not None and owner != run.run_id:
        return False  # tags copied from the parent by a re-execution: a run worker executes this one
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_dead_runs(instance: DagsterInstance) -> list[str]:
    """Fail the in-process runs of this host whose process is gone, and free the pool slots of every ended run.

    Returns the ids of the runs it failed. Cheap enough for every sync start and every sensor tick: one query for
    live runs of this host, one for the runs that hold or wait for pool slots.
    """
    reaped = []
    running = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING]
    records = instance.get_run_records(RunsFilter(statuses=running, tags={HOST_TAG: socket.gethostname()}))
    for record in records:
        run = record.dagster_run
        if _process_gone(run):
            instance.report_run_failed(run, f"process {run.tags[PID_TAG]} of this run is gone (killed or crashed)")
            reaped.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holders = storage.get_concurrency_run_ids()
        if holders:
            ended = instance.get_run_records(RunsFilter(run_ids=list(holders), statuses=FINISHED_STATUSES))
            for record in ended:
                storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
    return reaped


def active_syncs(instance: DagsterInstance, connection: str, exclude_run_id: str | None = None) -> list[str]:
    """Run ids of syncs of `connection` that are queued or running, after failing any whose process died."""
    reap_dead_runs(instance)
    records = instance.get_run_records(RunsFilter(statuses=ACTIVE, tags={PARTITION_NAME_TAG: connection}), limit=20)
    return [r.dagster_run.run_id for r in records if r.dagster_run.run_id != exclude_run_id]
