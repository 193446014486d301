"""Many machines, one index: concurrent syncs on real parts, the state store and the index the only shared state.

Eight connections (four local folders, four S3 buckets on moto; a few hundred objects each) are synced as separate
processes, four at a time, against a Dagster instance stored in a real PostgreSQL, a state store on moto's S3 and a
DuckLake index whose catalog is in the same PostgreSQL. Every run gets a fresh, empty BUCKET_SYNC_HOME, as a pod on a
new machine would. One run is killed with SIGKILL mid-probe and started again. Meanwhile a plain `duckdb` reader
attached to the DuckLake catalog checks, over and over, that it only ever sees whole syncs. At the end every
connection's rows equal those of a clean sequential run of the same syncs into a second DuckLake catalog.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from demo import synth
from resources.index import IndexMissing
from resources.index_resource import MediaIndex
from resources.state import StateStore, _remote_store
from tests.conftest import REPO, Workspace
from tests.integration.buckets import LocalTestBucket, S3TestBucket
from tests.proxy import FaultPlan, FaultProxy, route_through
from tests.servers import Server, create_database

pytestmark = pytest.mark.integration

CONNECTIONS = 8
OBJECTS = 200
AT_ONCE = 4
VICTIM = "s3-0"

SYNC_SCRIPT = """
import sys
from dagster import DagsterInstance
from pipelines.runner import run_sync
outcome = run_sync(sys.argv[1], DagsterInstance.get(), log_level="ERROR", probe={"checkpoint_rows": 10})
print(*outcome.failures, sep="\\n", file=sys.stderr)
sys.exit(0 if outcome.ok else 1)
"""

#: What a sync wrote, without what differs between two runs of it (times, run ids).
ROWS = {
    "objects": "SELECT key, size, etag, deleted, moved_to, moved_from, accepted FROM objects WHERE connection = $c",
    "media": "SELECT key, kind, format, width, height, orientation, display_width, display_height, error "
    "FROM media WHERE connection = $c",
    "violations": "SELECT key, rule, message FROM violations WHERE connection = $c",
    "syncs": "SELECT listed, new, deleted, accepted, violations FROM syncs WHERE connection = $c",
}


def dagster_yaml(postgres: Server) -> str:
    """deploy/dagster.yaml itself (Postgres storage, the run queue's limits, pools, monitoring, compute logs on S3),
    pointed at the test's server: this is the file a deployment uses, proven here on real parts."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    config["storage"]["postgres"]["postgres_db"]["port"] = int(postgres.extra["port"])
    return yaml.safe_dump(config)


def dataset(index: int) -> dict[str, bytes]:
    """A few hundred small objects, with some of every verdict, different per connection."""
    files: dict[str, bytes] = {}
    for i in range(OBJECTS):
        if i % 25 == 0:
            files[f"bad/{i:03d}.jpg"] = b"not a picture %d %d" % (index, i)
        else:
            files[f"img/{i:03d}.jpg"] = synth.jpeg(16 + index, 16 + i % 7, orientation=1 + (i % 10 == 0) * 5)
    return files


class Fleet:
    """The shared environment of every process: instance, state store, index, catalog. Nothing else is shared."""

    def __init__(self, label: str, tmp: Path, postgres: Server, s3: Server, index_url: str, state_url: str) -> None:
        self.tmp, self.index_url, self.state_url = tmp, index_url, state_url
        self.dagster_home = tmp / f"dagster-{label}"
        self.dagster_home.mkdir()
        database = create_database(postgres, f"dagster_{os.urandom(4).hex()}").split()[0].removeprefix("dbname=")
        (self.dagster_home / "dagster.yaml").write_text(dagster_yaml(postgres))
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DAGSTER_HOME": str(self.dagster_home),
            "BUCKET_SYNC_STATE": state_url,
            "BUCKET_SYNC_INDEX": index_url,
            "PGPASSWORD": postgres.extra["password"],
            "DAGSTER_PG_HOST": postgres.extra["host"],
            "DAGSTER_PG_USER": postgres.extra["user"],
            "DAGSTER_PG_PASSWORD": postgres.extra["password"],
            "DAGSTER_PG_DB": database,
            "DAGSTER_COMPUTE_LOG_BUCKET": state_url.removeprefix("s3://").split("/", 1)[0],
            "AWS_ACCESS_KEY_ID": S3TestBucket.KEY,
            "AWS_SECRET_ACCESS_KEY": S3TestBucket.SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": s3.endpoint,
        }
        self.env.pop("BUCKET_SYNC_INDEX_DATA", None)

    def start(self, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """One sync as its own process on a 'fresh machine': an empty BUCKET_SYNC_HOME of its own."""
        home = self.tmp / "machines" / os.urandom(6).hex()
        env = {**self.env, "BUCKET_SYNC_HOME": str(home)}
        return subprocess.Popen([sys.executable, "-c", SYNC_SCRIPT, name], env=env, cwd=REPO), home

    def run(self, name: str) -> int:
        """Sync `name` to the end; a run that succeeded must leave nothing on its machine."""
        child, home = self.start(name)
        code = child.wait(timeout=600)
        if code == 0:
            left = [p for p in home.rglob("*") if p.is_file()]
            assert not left, f"the sync of {name} left state on its machine: {left[:3]}"
        return code


def whole_sync_violations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What a reader must never see: a connection whose objects or violations disagree with its latest sync."""
    problems = []
    rows = con.execute(
        """
        WITH latest AS (
            SELECT connection, listed, violations FROM syncs
            QUALIFY row_number() OVER (PARTITION BY connection ORDER BY finished_at DESC) = 1
        )
        SELECT l.connection, l.listed, l.violations,
               (SELECT count(*) FROM objects o WHERE o.connection = l.connection AND NOT o.deleted),
               (SELECT count(*) FROM violations v WHERE v.connection = l.connection)
        FROM latest l
        """
    ).fetchall()
    for connection, listed, violations, live, found in rows:
        if (listed, violations) != (live, found):
            problems.append(f"{connection}: sync says {listed}/{violations}, tables hold {live}/{found}")
    return problems


@pytest.fixture
def reader_watch(tmp_path: Path) -> Iterator[Any]:
    stop = threading.Event()
    seen: dict[str, Any] = {"reads": 0, "problems": [], "max_syncs": 0}

    def watch(index: MediaIndex) -> None:
        while not stop.is_set():
            try:
                with index.connect(read_only=True) as con:
                    seen["problems"].extend(whole_sync_violations(con))
                    count = con.execute("SELECT count(*) FROM syncs").fetchall()[0][0]
                    seen["max_syncs"] = max(seen["max_syncs"], count)
                    seen["reads"] += 1
            except IndexMissing:  # no sync has committed yet
                pass
            except duckdb.CatalogException as exc:  # the first writer is still creating the tables: no sync yet
                if seen["max_syncs"] or "does not exist" not in str(exc):
                    seen["problems"].append(f"reader failed: {exc}")
            except Exception as exc:
                seen["problems"].append(f"reader failed: {type(exc).__name__}: {exc}")
            time.sleep(0.2)

    threads: list[threading.Thread] = []

    def begin(index: MediaIndex) -> None:
        thread = threading.Thread(target=watch, args=(index,), daemon=True)
        thread.start()
        threads.append(thread)

    seen["begin"] = begin
    yield seen
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


def test_eight_connections_four_at_a_time_on_postgres_ducklake_and_s3(
    workspace: Workspace,
    postgres_server: Server,
    moto_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reader_watch: dict[str, Any],
) -> None:
    # Buckets: four local folders and four S3 buckets; the victim's reads are slowed so it can be killed mid-probe.
    entries: list[dict[str, Any]] = []
    state_bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    slow = FaultPlan(every=2, burst=1, kinds=("delay",), delay_s=0.3, methods=("GET",), path_contains="/img/")
    proxy = FaultProxy(moto_server.endpoint, provider="s3", plan=slow)
    proxy.__enter__()
    try:
        for i in range(CONNECTIONS // 2):
            local = LocalTestBucket(tmp_path / f"local-{i}")
            for key, data in dataset(i).items():
                local.put(key, data)
            entries.append(local.entry(f"local-{i}", profile="strict"))
            s3 = S3TestBucket(moto_server.endpoint, monkeypatch)
            for key, data in dataset(10 + i).items():
                s3.put(key, data)
            entry = s3.entry(f"s3-{i}", profile="cvat")
            entries.append(route_through(entry, proxy) if entry["name"] == VICTIM else entry)
        workspace.write_catalog(*entries)
        names = [e["name"] for e in entries]

        def fleet(label: str) -> Fleet:
            lake = "ducklake:postgres:" + create_database(postgres_server, f"lake_{label}_{os.urandom(3).hex()}")
            return Fleet(label, tmp_path, postgres_server, moto_server, lake, f"s3://{state_bucket.bucket}/{label}")

        # The clean sequential run: one sync after another, into its own catalog and state.
        sequential = fleet("seq")
        started = time.monotonic()
        for name in names:
            assert sequential.run(name) == 0, f"sequential sync of {name} failed"
        sequential_s = time.monotonic() - started

        # The concurrent run, watched by a reader, with one run killed mid-probe and started again.
        concurrent = fleet("par")
        monkeypatch.setenv("PGPASSWORD", postgres_server.extra["password"])
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"):
            monkeypatch.setenv(key, concurrent.env[key])
        _remote_store.cache_clear()
        concurrent_index = MediaIndex(url=concurrent.index_url)
        reader_watch["begin"](concurrent_index)
        checkpoint = f"snapshots/{VICTIM}/checkpoint/"
        state = StateStore(url=concurrent.state_url)
        started = time.monotonic()
        victim, _ = concurrent.start(VICTIM)
        deadline = time.monotonic() + 300
        while not state.list(checkpoint):
            assert victim.poll() is None, "the victim finished before it could be killed; slow its reads down"
            assert time.monotonic() < deadline, "the victim never checkpointed"
            time.sleep(0.1)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
            codes = dict(zip(names, pool.map(concurrent.run, names), strict=True))
        concurrent_s = time.monotonic() - started
        assert codes == dict.fromkeys(names, 0), codes
    finally:
        proxy.__exit__(None, None, None)

    time.sleep(0.5)  # one more read after the last commit
    assert reader_watch["reads"] > 0
    assert reader_watch["problems"] == [], "\n".join(reader_watch["problems"][:5])

    sequential_index = MediaIndex(url=sequential.index_url)
    with concurrent_index.connect(read_only=True) as par, sequential_index.connect(read_only=True) as seq:
        for name in names:
            for table, sql in ROWS.items():
                got = sorted(par.execute(sql, {"c": name}).fetchall(), key=repr)
                want = sorted(seq.execute(sql, {"c": name}).fetchall(), key=repr)
                if table == "syncs":  # the killed run never committed: one syncs row per connection, as sequential
                    assert got == want, f"{name}: {table} differs"
                else:
                    assert got == want, f"{name}: {table} differs ({len(got)} rows vs {len(want)})"
            live = par.execute(
                "SELECT count(*), count(DISTINCT key) FROM objects WHERE connection = $c AND NOT deleted", {"c": name}
            ).fetchall()[0]
            assert live == (OBJECTS, OBJECTS), f"{name}: objects lost or duplicated: {live}"
    print(
        f"\n{CONNECTIONS} connections x {OBJECTS} objects on DuckLake+Postgres, S3 state: sequential "
        f"{sequential_s:.1f} s, {AT_ONCE} at a time {concurrent_s:.1f} s (incl. one killed and restarted run); "
        f"reader saw {reader_watch['reads']} snapshots, none torn"
    )
