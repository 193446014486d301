"""SIGTERM stops a sync promptly, even while its probes wait on a slow bucket, and the next sync still completes.

The bucket sits behind the fault proxy, which holds every object read for seconds, so the sync is mid-probe with reads
in flight when the signal arrives: a thread pool that waits for its reads, or a signal handler that only sets a flag,
would keep the process alive long after a person (or Kubernetes) asked it to stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance

from demo import synth
from pipelines.runner import run_sync
from tests.conftest import REPO, Workspace
from tests.integration.buckets import S3TestBucket
from tests.proxy import FaultPlan, FaultProxy, route_through
from tests.servers import Server

pytestmark = pytest.mark.integration

OBJECTS = 24
STOP_WITHIN_S = 15.0

#: How Dagster's run worker (`dagster api execute_run`, what the daemon and the UI launch) meets SIGTERM: it maps it to
#: SIGINT, which interrupts the step with DagsterExecutionInterruptedError. The CLI keeps Python's default instead.
RUN_WORKER = """
import sys
from dagster._utils.interrupts import setup_interrupt_handlers
from pipelines.instance import local_instance
from pipelines.runner import run_sync
setup_interrupt_handlers()
outcome = run_sync(sys.argv[1], local_instance(), log_level="ERROR")
sys.exit(0 if outcome.ok else 1)
"""


def command(kind: str) -> list[str]:
    if kind == "cli":
        return [str(Path(sys.executable).with_name("bucket-sync")), "sync", "stalled", "-q"]
    return [sys.executable, "-c", RUN_WORKER, "stalled"]


@pytest.mark.parametrize("kind", ["cli", "run_worker"])
def test_sigterm_stops_a_sync_mid_probe_and_the_next_sync_completes(
    kind: str,
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    moto_server: Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    for i in range(OBJECTS):
        bucket.put(f"slow/{i:03d}.jpg", synth.jpeg(40 + i, 30))
    stall = FaultPlan(every=2, burst=1, kinds=("delay",), delay_s=5.0, methods=("GET",), path_contains="/slow/")
    with FaultProxy(moto_server.endpoint, provider="s3", plan=stall) as proxy:
        workspace.write_catalog(route_through(bucket.entry("stalled"), proxy))
        dagster_home = tmp_path / "dagster-home"
        dagster_home.mkdir()
        env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": str(REPO)}
        child = subprocess.Popen(command(kind), env=env, cwd=REPO)
        try:
            deadline = time.monotonic() + 120
            while not proxy.object_reads():
                assert child.poll() is None, "the sync ended before it started probing"
                assert time.monotonic() < deadline, "the sync never started probing"
                time.sleep(0.05)
            time.sleep(0.5)  # reads are in flight, held by the proxy
            sent = time.monotonic()
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the sync was still running {STOP_WITHIN_S:.0f} s after SIGTERM")
            assert time.monotonic() - sent < STOP_WITHIN_S
            assert child.returncode != 0
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(timeout=30)

    workspace.write_catalog(bucket.entry("stalled"))
    assert run_sync("stalled", dagster_instance, log_level="ERROR").ok
    assert workspace.query("SELECT count(*) FROM media WHERE connection = 'stalled' AND error IS NULL") == [(OBJECTS,)]
