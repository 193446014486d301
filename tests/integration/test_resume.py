"""Kill a sync mid-probe (SIGKILL, several times) and start it again: it finishes with the same index as a clean
run, re-reads no object it had checkpointed, and every kill leaves the previous state readable.

The bucket sits behind the recording proxy, which also slows object reads so there is a window to kill in: which
objects each run read is counted at the wire, not by our own counters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from demo import synth
from pipelines.runner import run_sync
from tests.conftest import REPO, Workspace
from tests.integration.buckets import S3TestBucket
from tests.proxy import FaultPlan, FaultProxy, route_through
from tests.servers import Server

pytestmark = pytest.mark.integration

OBJECTS = 36
KILLS = 3

SYNC_SCRIPT = """
import sys
from pipelines.instance import local_instance
from pipelines.runner import run_sync
outcome = run_sync(sys.argv[1], local_instance(), log_level="ERROR", probe={"checkpoint_rows": 3, "concurrency": 2})
sys.exit(0 if outcome.ok else 1)
"""


def facts_by_key(index: Path, name: str) -> dict[str, tuple[Any, ...]]:
    con = duckdb.connect(str(index), read_only=True)
    rows = con.execute(
        "SELECT key, kind, format, width, height, orientation, pix_fmt, major_brand, error FROM media "
        "WHERE connection = $c",
        {"c": name},
    ).fetchall()
    con.close()
    return {r[0]: r[1:] for r in rows}


def violations_of(index: Path, name: str) -> set[tuple[str, str]]:
    con = duckdb.connect(str(index), read_only=True)
    rows = set(con.execute("SELECT key, rule FROM violations WHERE connection = $c", {"c": name}).fetchall())
    con.close()
    return rows


def checkpointed_keys(folder: Path) -> set[str]:
    return {
        k for part in folder.glob("part-*.parquet") for k in pq.read_table(part, columns=["key"])["key"].to_pylist()
    }


def read_keys(proxy: FaultProxy, bucket: str) -> set[str]:
    prefix = f"/{bucket}/"
    return {unquote(r.path[len(prefix) :]) for r in proxy.object_reads() if r.path.startswith(prefix)}


def test_killed_syncs_resume_without_rereading_and_end_like_a_clean_run(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    moto_server: Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    for i in range(OBJECTS):
        data = synth.jpeg(48 + i, 32, orientation=(i % 8) + 1) if i % 6 else b"not an image %d" % i
        bucket.put(f"shots/{i:03d}.jpg", data)

    clean = bucket.entry("clean")
    slow = FaultPlan(every=2, burst=1, kinds=("delay",), delay_s=0.25, methods=("GET",), path_contains="/shots/")
    with FaultProxy(moto_server.endpoint, provider="s3", plan=slow) as proxy:
        resumed = route_through(bucket.entry("resumed"), proxy)
        workspace.write_catalog(clean, resumed)
        env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster-home"), "PYTHONPATH": str(REPO)}
        (tmp_path / "dagster-home").mkdir()
        checkpoint = workspace.home / "snapshots" / "resumed" / "checkpoint"
        manifest = workspace.home / "manifests" / "resumed" / "manifest.jsonl"
        index = workspace.home / "index.duckdb"

        done_before: set[str] = set()
        for kill in range(KILLS):
            proxy.clear()
            child = subprocess.Popen([sys.executable, "-c", SYNC_SCRIPT, "resumed"], env=env, cwd=REPO)
            deadline = time.monotonic() + 120
            # Kill once this run has checkpointed something new, i.e. mid-probe.
            while checkpointed_keys(checkpoint) <= done_before and time.monotonic() < deadline:
                assert child.poll() is None, "the sync finished before it could be killed; slow the reads down"
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            assert read_keys(proxy, bucket.bucket).isdisjoint(done_before), f"run {kill + 1} re-read finished objects"
            # The previous good state is intact: no half-written manifest, and the index (if any) opens cleanly.
            assert not manifest.exists()
            if index.exists():
                assert facts_by_key(index, "resumed") == {}
            done_before = checkpointed_keys(checkpoint)
            assert 0 < len(done_before) < OBJECTS

        proxy.clear()
        final = subprocess.run([sys.executable, "-c", SYNC_SCRIPT, "resumed"], env=env, cwd=REPO, timeout=300)
        assert final.returncode == 0
        assert read_keys(proxy, bucket.bucket).isdisjoint(done_before), "the final run re-read finished objects"
        assert not checkpointed_keys(checkpoint), "a completed sync clears its checkpoint"

    assert run_sync("clean", dagster_instance, log_level="ERROR").ok
    assert facts_by_key(index, "resumed") == facts_by_key(index, "clean")
    assert len(facts_by_key(index, "clean")) == OBJECTS
    strip = {(k, r) for k, r in violations_of(index, "resumed")}
    assert strip == violations_of(index, "clean") and strip
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    clean_lines = [
        json.loads(x) for x in (workspace.home / "manifests" / "clean" / "manifest.jsonl").read_text().splitlines()
    ]
    assert lines == clean_lines
