"""The DuckLake index (catalog in a real PostgreSQL, data files in a folder or on S3) holds exactly what the DuckDB
file holds after the same syncs, and two syncs of different connections that commit at the same moment both land.

Each scenario syncs the same buckets twice, once into a DuckDB-file index and once into DuckLake, each with its own
BUCKET_SYNC_HOME, so the listings (etags, sizes, inodes) are the same and only the index differs. Timestamps differ
between the two, so rows are compared on every other column, and on how the timestamps relate (first_seen =
last_seen for a new object, deleted_at set for a tombstone).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance
from typer.testing import CliRunner

from demo import synth
from pipelines.cli import app
from pipelines.runner import run_sync
from resources.index import MEDIA_COLUMNS
from resources.index_resource import MediaIndex
from tests.conftest import REPO, Workspace
from tests.integration.buckets import LocalTestBucket
from tests.servers import Server, create_database

pytestmark = pytest.mark.integration

#: Queries whose rows must be equal on both backends: every column that does not hold a wall-clock time.
COMPARED = {
    "connections": """
        SELECT name, provider, location, prefix, profile, detached, first_synced IS NOT NULL,
               last_synced >= first_synced
        FROM connections ORDER BY name""",
    "objects": """
        SELECT connection, key, size, etag, last_modified, version, content_md5, first_seen = last_seen, deleted,
               deleted_at IS NOT NULL, moved_to, moved_from, accepted
        FROM objects ORDER BY connection, key""",
    "media": f"""
        SELECT connection, key, {MEDIA_COLUMNS.replace(", probed_at", "")}, probed_at IS NOT NULL
        FROM media ORDER BY connection, key""",
    "violations": """
        SELECT connection, key, rule, severity, message, remediation
        FROM violations ORDER BY connection, key, rule""",
    "syncs": """
        SELECT connection, row_number() OVER (PARTITION BY connection ORDER BY finished_at) AS n, full_resync,
               listed, new, changed, unchanged, deleted, moved, probed, carried, accepted, violations,
               bytes_stored, bytes_read, requests, finished_at >= started_at
        FROM syncs ORDER BY connection, n""",
}


def first_dataset(bucket: LocalTestBucket, salt: int) -> None:
    """More than ten objects, so that DuckLake writes Parquet data files rather than inlining the rows in Postgres."""
    for i in range(10):
        bucket.put(f"img/{i:02d}.jpg", synth.jpeg(40 + i + salt, 30, orientation=1))
    bucket.put("rotated.jpg", synth.jpeg(40, 30, orientation=6))
    bucket.put("old/place.jpg", synth.jpeg(80 + salt, 60))
    bucket.put("doomed.png", synth.png(20 + salt, 10))
    bucket.put("broken.jpg", synth.truncated(synth.jpeg(120, 90), 0.5))
    bucket.put("clips/isom.mp4", synth.mp4(brand="isom"))


def change_everything(bucket: LocalTestBucket) -> None:
    """A move, a deletion, a changed object, a new violation and a new accepted image."""
    bucket.move("old/place.jpg", "new/place.jpg")
    bucket.delete("doomed.png")
    bucket.put("img/03.jpg", synth.jpeg(200, 100, orientation=1))
    bucket.put("rotated-3.jpg", synth.jpeg(50, 40, orientation=3))
    bucket.put("fresh.jpg", synth.jpeg(50, 50))


def rows(index: MediaIndex) -> dict[str, list[tuple[Any, ...]]]:
    with index.connect(read_only=True) as con:
        return {table: con.execute(sql).fetchall() for table, sql in COMPARED.items()}


def lake_url(postgres: Server) -> str:
    return "ducklake:postgres:" + create_database(postgres, f"lake_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def lake(postgres_server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh DuckLake catalog database; the password reaches DuckDB only through PGPASSWORD."""
    monkeypatch.setenv("PGPASSWORD", postgres_server.extra["password"])
    return lake_url(postgres_server)


def sync_all(names: list[str], instance: DagsterInstance) -> float:
    started = time.monotonic()
    for name in names:
        outcome = run_sync(name, instance, log_level="WARNING")
        assert outcome.ok, outcome.failures
    return time.monotonic() - started


@pytest.mark.parametrize("data_on", ["folder", "s3"])
def test_ducklake_holds_what_the_duckdb_file_holds(
    data_on: str,
    lake: str,
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    names = ["alpha", "beta"] if data_on == "folder" else ["alpha"]
    buckets = {name: LocalTestBucket(tmp_path / "buckets" / name) for name in names}
    for salt, bucket in enumerate(buckets.values()):
        first_dataset(bucket, salt)
    workspace.write_catalog(*(b.entry(name, profile="strict") for name, b in buckets.items()))

    if data_on == "s3":
        moto: Server = request.getfixturevalue("moto_server")
        secret = f"lake-secret-{uuid.uuid4().hex}"
        for var, value in {
            "AWS_ACCESS_KEY_ID": "lake-test-key",
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": moto.endpoint,
        }.items():
            monkeypatch.setenv(var, value)
        data_bucket = f"lake-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=data_bucket)
        data_path = f"s3://{data_bucket}/index-data/"
    else:
        data_path = str(tmp_path / "lake-data")

    file_home, lake_home = tmp_path / "file-home", tmp_path / "lake-home"

    def on_file() -> None:
        monkeypatch.setenv("BUCKET_SYNC_HOME", str(file_home))
        monkeypatch.delenv("BUCKET_SYNC_INDEX", raising=False)
        monkeypatch.delenv("BUCKET_SYNC_INDEX_DATA", raising=False)

    def on_lake() -> None:
        monkeypatch.setenv("BUCKET_SYNC_HOME", str(lake_home))
        monkeypatch.setenv("BUCKET_SYNC_INDEX", lake)
        monkeypatch.setenv("BUCKET_SYNC_INDEX_DATA", data_path)

    timings: dict[str, list[float]] = {"file": [], "lake": []}
    for round_ in (1, 2):
        if round_ == 2:
            for bucket in buckets.values():
                change_everything(bucket)
        on_file()
        timings["file"].append(sync_all(names, dagster_instance))
        on_lake()
        timings["lake"].append(sync_all(names, dagster_instance))

    on_file()
    expected = rows(MediaIndex())
    on_lake()
    assert MediaIndex().target.lake
    got = rows(MediaIndex())
    for table in COMPARED:
        assert got[table] == expected[table], table

    # The scenario did what it says: tombstones, a move, violations, and two syncs per connection.
    objects = expected["objects"]
    assert {(r[0], r[1]) for r in objects if r[8] and r[10] == "new/place.jpg"} == {(n, "old/place.jpg") for n in names}
    assert {(r[0], r[1]) for r in objects if r[8] and r[10] is None} == {(n, "doomed.png") for n in names}
    rotated = {(n, "rotated.jpg", "exif_orientation") for n in names}
    assert {(r[0], r[1], r[2]) for r in expected["violations"]} >= rotated
    assert len(expected["syncs"]) == 2 * len(names)
    assert not (tmp_path / "lake-home" / "index.duckdb").exists(), "the DuckLake run wrote a DuckDB file index"

    # `status` and `query` read it (data files included, through the catalog); `query` stays sandboxed.
    runner = CliRunner()
    wide = {"COLUMNS": "200"}
    live = sum(1 for r in objects if not r[8])
    sql = "SELECT count(*) AS n, sum(size) AS bytes FROM objects WHERE NOT deleted"
    counted = runner.invoke(app, ["query", sql, "--json"], env=wide)
    assert counted.exit_code == 0, counted.output
    [row] = json.loads(counted.output)
    assert row["n"] == live and row["bytes"] > 0, counted.output
    status = runner.invoke(app, ["status"], env=wide)
    assert status.exit_code == 0 and all(name in status.output for name in names), status.output
    leak = tmp_path / "leak.csv"
    refused = runner.invoke(app, ["query", f"COPY (SELECT * FROM objects) TO '{leak}'"], env=wide)
    assert refused.exit_code == 2 and "refused" in refused.output and not leak.exists(), refused.output

    if data_on == "s3":
        listed = s3.list_objects_v2(Bucket=data_bucket, Prefix="index-data/")
        parquet = [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".parquet")]
        assert parquet, "no DuckLake data file reached S3"
    else:
        assert list(Path(data_path).rglob("*.parquet")), "no DuckLake data file in the data folder"
    print(
        f"\n[{data_on}] {len(names)} connection(s), wall seconds per round (1: all new, 2: changes): "
        f"DuckDB file {[round(t, 1) for t in timings['file']]}, DuckLake {[round(t, 1) for t in timings['lake']]}; "
        f"objects {len(objects)}, media {len(expected['media'])}, violations {len(expected['violations'])}"
    )


SYNC_AT_THE_SAME_MOMENT = """
import os, sys, time
from pathlib import Path
from dagster import instance_for_test
from resources.index_resource import MediaIndex
from pipelines.cli import app
from pipelines.runner import run_sync

name, barrier = sys.argv[1], Path(sys.argv[2])
attempts = 0
original = MediaIndex._transaction

def transaction(self, con, work):
    # Hold the sync's transaction open, its work done, until the other process's is too: then both COMMIT at once.
    if work.__name__ != "fold":
        return original(self, con, work)

    def at_the_barrier(c):
        global attempts
        attempts += 1
        result = work(c)
        (barrier / name).touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return result

    at_the_barrier.__name__ = "fold"
    return original(self, con, at_the_barrier)

MediaIndex._transaction = transaction
with instance_for_test() as instance:  # an instance of its own, like a run on another machine: no shared pool
    outcome = run_sync(name, instance, log_level="ERROR")
print(f"attempts={attempts}", flush=True)
sys.exit(0 if outcome.ok else 1)
"""


def test_two_syncs_committing_at_once_both_land(
    lake: str, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["left", "right"]
    buckets = {name: LocalTestBucket(tmp_path / "buckets" / name) for name in names}
    for salt, bucket in enumerate(buckets.values()):
        first_dataset(bucket, salt)
    workspace.write_catalog(*(b.entry(name) for name, b in buckets.items()))
    monkeypatch.setenv("BUCKET_SYNC_INDEX", lake)
    monkeypatch.setenv("BUCKET_SYNC_INDEX_DATA", str(tmp_path / "lake-data"))

    for round_ in (1, 2):  # the first round creates the rows, the second rewrites them (MERGE updates, deletes)
        if round_ == 2:
            for bucket in buckets.values():
                change_everything(bucket)
        barrier = tmp_path / f"barrier-{round_}"
        barrier.mkdir()
        started = time.monotonic()
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-c", SYNC_AT_THE_SAME_MOMENT, name, str(barrier)],
                cwd=REPO,
                env=os.environ.copy(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in names
        }
        outputs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
        wall = time.monotonic() - started
        for name, proc in procs.items():
            assert proc.returncode == 0, f"{name}:\n{outputs[name][-3000:]}"
        assert sorted(p.name for p in barrier.iterdir()) == names, "the two transactions were not open together"
        attempts = {name: outputs[name].strip().splitlines()[-1] for name in names}
        print(f"\nround {round_}: both committed in {wall:.1f}s wall; {attempts}")

        index = MediaIndex()
        syncs = dict(
            index_rows(index, "SELECT connection, count(*) FROM syncs GROUP BY connection ORDER BY connection")
        )
        assert syncs == {name: round_ for name in names}
        live = dict(
            index_rows(
                index, "SELECT connection, count(*) FROM objects WHERE NOT deleted GROUP BY connection ORDER BY 1"
            )
        )
        assert live == {name: 15 if round_ == 1 else 16 for name in names}
        duplicates = index_rows(
            index, "SELECT connection, key FROM objects GROUP BY connection, key HAVING count(*) > 1"
        ) + index_rows(index, "SELECT connection, key FROM media GROUP BY connection, key HAVING count(*) > 1")
        assert duplicates == []


def index_rows(index: MediaIndex, sql: str) -> list[tuple[Any, ...]]:
    with index.connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_no_credential_reaches_the_catalog_or_the_runs(
    postgres_server: Server,
    lake: str,
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The Postgres password is used (the server demands it) and found nowhere: not in the catalog database (every
    byte pg_dump gives), not in the index's data files, not in the run's event log."""
    bucket = LocalTestBucket(tmp_path / "bucket")
    first_dataset(bucket, 0)
    workspace.write_catalog(bucket.entry("gamma"))
    monkeypatch.setenv("BUCKET_SYNC_INDEX", lake)
    monkeypatch.setenv("BUCKET_SYNC_INDEX_DATA", str(tmp_path / "lake-data"))
    outcome = run_sync("gamma", dagster_instance, log_level="DEBUG")
    assert outcome.ok, outcome.failures

    password = postgres_server.extra["password"]
    dump = subprocess.run(
        [str(Path(postgres_server.extra["bin"]) / "pg_dump"), "--data-only", lake.removeprefix("ducklake:postgres:")],
        env={**os.environ, "PGPASSWORD": password},
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    assert b"ducklake_snapshot" in dump  # the dump is of the catalog the sync wrote
    assert password.encode() not in dump
    for path in (tmp_path / "lake-data").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    logs = "\n".join(str(e) for e in dagster_instance.all_logs(outcome.result.run_id))
    assert "ducklake" in logs.lower()  # the run did say where the index is
    assert password not in logs
