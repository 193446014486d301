"""One sync per connection at a time, and no connection wedged by a sync whose process died.

Runs launched by the daemon or the UI are watched by Dagster's run monitoring (enabled in the instance config), which
fails them when their worker dies. Runs executed in process (`bucket-sync sync`, tests) have no worker to watch, so
they carry their host and PID as tags; a run with those tags whose process no longer exists is marked failed here,
instead of blocking the connection forever after a SIGKILL or a crash.
"""

import os
import socket

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG

HOST_TAG = "bucket-sync/host"
PID_TAG = "bucket-sync/pid"

ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def process_tags() -> dict[str, str]:
    """Tags that let a later run tell whether this in-process run is still alive."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _process_gone(run: DagsterRun) -> bool:
    host, pid = run.tags.get(HOST_TAG), run.tags.get(PID_TAG)
    if host != socket.gethostname() or not (pid and pid.isdigit()):
        return False  # not ours to judge: another machine, or a run the daemon's monitoring watches
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def active_syncs(instance: DagsterInstance, connection: str, exclude_run_id: str | None = None) -> list[str]:
    """Run ids of syncs of `connection` that are queued or running, after failing any whose process died."""
    records = instance.get_run_records(RunsFilter(statuses=ACTIVE, tags={PARTITION_NAME_TAG: connection}), limit=20)
    alive = []
    for record in records:
        run = record.dagster_run
        if run.run_id == exclude_run_id:
            continue
        if run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING) and _process_gone(run):
            instance.report_run_failed(run, f"process {run.tags[PID_TAG]} of this run is gone (killed or crashed)")
            continue
        alive.append(run.run_id)
    return alive
