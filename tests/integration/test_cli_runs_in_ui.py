"""What the UI shows of `bucket-sync sync`: a real `dagster dev` and real CLI processes sharing one DAGSTER_HOME.

A CLI sync must be a run of the code location (listed under the job, re-executable from the UI), and the asset graph
must show the catalog as it is: a connection that left it leaves the graph, and a connection whose failed sync was
followed by a good one is not failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from demo import synth
from tests.conftest import Workspace
from tests.dagster_ui import DagsterUI
from tests.servers import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "bucket-sync")
#: Bounds, not speed claims: a re-executed run starts a run process on a shared 2-core machine, and the registry
#: sensor ticks every 30 s. What never happens (a run that cannot start, a partition never dropped) hits any bound.
RUN_BOUND_S = 600
SENSOR_BOUND_S = 300


def cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def local(name: str, root: Path) -> dict[str, Any]:
    return {"name": name, "provider": "local", "root": str(root)}


def unreachable(name: str) -> dict[str, Any]:
    """An S3 connection whose endpoint nothing listens on: its listing fails at once, like a store that is down."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    return {
        "name": name,
        "provider": "s3",
        "bucket": "nowhere",
        "options": {"endpoint": endpoint, "region": "us-east-1"},
        "auth": {"mode": "anonymous"},
    }


def test_cli_runs_belong_to_the_code_location_and_the_graph_drops_what_left_the_catalog(
    workspace: Workspace, dagster_ui: DagsterUI, tmp_path: Path
) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    (root / "a.png").write_bytes(synth.png(16, 16))
    (root / "b.jpg").write_bytes(synth.jpeg(24, 16, orientation=6))
    workspace.write_catalog(local("keep", root), unreachable("flaky"), local("dropped", root))
    for name in ("keep", "dropped"):
        synced = cli("sync", name, "-q")
        assert synced.returncode == 0, synced.stdout + synced.stderr
    assert cli("sync", "flaky", "-q").returncode == 2
    # `dropped` synced once, then its store went away: its last run failed, as a scratch connection's often does.
    workspace.write_catalog(local("keep", root), unreachable("flaky"), unreachable("dropped"))
    assert cli("sync", "dropped", "-q").returncode == 2

    # 1. Each CLI run is a run of the workspace's code location, listed under the job as a UI launch is.
    listed = dagster_ui.job_runs("sync_connection")
    assert sorted((r["partition"], r["status"]) for r in listed) == [
        ("dropped", "FAILURE"),
        ("dropped", "SUCCESS"),
        ("flaky", "FAILURE"),
        ("keep", "SUCCESS"),
    ]
    location = {"repositoryLocationName": dagster_ui.location, "repositoryName": dagster_ui.repository}
    assert all(r["origin"] == location for r in listed), listed
    runs = {r["partition"]: r for r in listed if r["partition"] == "keep"}

    # ... and "Re-execute all" on it launches a run that the daemon starts and that succeeds.
    again = dagster_ui.reexecute(runs["keep"]["run_id"])
    status = dagster_ui.wait_run(again, RUN_BOUND_S)
    assert status == "SUCCESS", dagster_ui.run_log(again)[-3000:]
    assert workspace.query("SELECT count(*) FROM syncs WHERE connection = 'keep'") == [(2,)]

    assert sorted(dagster_ui.partitions("object_listing")["failed"]) == ["dropped", "flaky"]

    # 2. `flaky` is fixed and syncs; `dropped` leaves the catalog.
    workspace.write_catalog(local("keep", root), local("flaky", root))
    fixed = cli("sync", "flaky", "-q")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    deadline = time.monotonic() + SENSOR_BOUND_S
    while "dropped" in (partitions := dagster_ui.partitions("object_listing"))["keys"]:
        assert time.monotonic() < deadline, f"the registry sensor kept 'dropped' for {SENSOR_BOUND_S}s: {partitions}"
        time.sleep(2)
    assert sorted(partitions["keys"]) == ["flaky", "keep"]
    assert partitions["failed"] == [], partitions
    assert sorted(partitions["materialized"]) == ["flaky", "keep"]

    # Its history and its index rows stay, and `status` says it is detached.
    assert "dropped" in {r["partition"] for r in dagster_ui.job_runs("sync_connection")}
    assert workspace.query("SELECT count(*) FROM objects WHERE connection = 'dropped'") == [(2,)]
    status_out = cli("status", columns=200)
    assert status_out.returncode == 0, status_out.stderr
    assert "dropped (detached)" in status_out.stdout and "keep (detached)" not in status_out.stdout
