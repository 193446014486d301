"""What a delta sync of a few changed objects costs at the wire, against a full sync of the same change.

One run, repeatable (fresh temporary folders, fixed object bytes):

1. A moto S3 bucket of `--n` objects (default 10,000): a few real JPEGs from demo/synth.py (EXIF-rotated, so the
   index has violations), the rest one small Pillow JPEG varied per object by a comment segment.
2. One connection on it, synced in full (straight to moto: that first sync is not what is measured); the state
   store and the index it left are copied aside.
3. The bucket's notifications go to an SQS queue on moto (`s3:ObjectCreated:*`, `s3:ObjectRemoved:*`), and
   `--new`/`--overwrite`/`--delete` objects change (default 4, 3, 3: ten changed objects).
4. The queue is drained, its bodies parsed by resources/event_messages.py into one EventBatch, and the connection
   runs a delta sync of it. Then the state store and the index are put back as the first sync left them, and the
   same connection runs a full sync of the same change: two syncs from one starting point, without a second first
   sync of the whole bucket. Both go through the recording proxy of the test suite (tests/proxy.py), which counts at
   the wire: list requests, HEAD requests, object GETs and the bytes the server sent for them (listing pages apart).

It also checks what makes the comparison fair: both syncs leave the same objects, media and violations rows.

    python benchmarks/delta_sync.py
    python benchmarks/delta_sync.py --n 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import yaml  # noqa: E402
from dagster import instance_for_test  # noqa: E402

from assets.snapshots import BatchedEvent, EventBatch  # noqa: E402
from benchmarks.resync import base_jpeg, varied  # noqa: E402
from demo import synth  # noqa: E402
from pipelines.runner import run_sync  # noqa: E402
from resources.event_messages import parse_s3_message  # noqa: E402
from resources.index_resource import MediaIndex  # noqa: E402
from resources.state import StateStore  # noqa: E402
from tests.proxy import FaultProxy, Recorded  # noqa: E402
from tests.servers import start_moto  # noqa: E402

BUCKET = "delta-bench"
KEY, SECRET = "bench-key", "bench-secret"
REAL_JPEGS = 24
NAME = "bench"


def fill(s3: Any, n: int) -> list[str]:
    """`n` objects under `set/`: REAL_JPEGS synthesized photos (every EXIF orientation), the rest small JPEGs."""
    base = base_jpeg()
    keys = [f"set/{i // 1000:02d}/{i:06d}.jpg" for i in range(n)]

    def body(i: int) -> bytes:
        if i < REAL_JPEGS:
            return synth.jpeg(160 + i, 120, orientation=1 + i % 8, seed=i)
        return varied(base, i)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=keys[i], Body=body(i)), range(n)))
    return keys


def notify(s3: Any, sqs: Any) -> str:
    """A queue receiving the bucket's created and removed notifications; its URL."""
    url = sqs.create_queue(QueueName=f"bench-events-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]
        },
    )
    return url


def drain(sqs: Any, url: str) -> tuple[list[BatchedEvent], list[str]]:
    events: list[BatchedEvent] = []
    ids: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            ids.append(message["MessageId"])
            events += [BatchedEvent(key=e.key, kind=e.kind, time=e.time) for e in parse_s3_message(message["Body"])]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return events, ids


def write_catalog(work: Path, endpoint: str) -> None:
    entry = {
        "name": NAME,
        "provider": "s3",
        "bucket": BUCKET,
        "prefix": "set/",
        "options": {"endpoint": endpoint, "path_style": True, "region": "us-east-1"},
        "auth": {"mode": "keys", "access_key_id_env": "BENCH_KEY", "secret_access_key_env": "BENCH_SECRET"},
    }
    (work / "catalog.yaml").write_text(yaml.safe_dump({"connections": [entry]}))


def wire(records: list[Recorded]) -> dict[str, int]:
    """What one sync sent to the bucket and read from it, by the proxy's record."""
    objects = [r for r in records if r.kind == "object"]
    gets = [r for r in objects if r.method == "GET"]
    listings = [r for r in records if r.method == "GET" and r.kind == "list"]
    return {
        "list requests": len(listings),
        "HEAD requests": sum(r.method == "HEAD" for r in objects),
        "object reads (GET)": len(gets),
        "bytes read (GET bodies)": sum(r.bytes_out for r in gets),
        "bytes of listing pages": sum(r.bytes_out for r in listings),
        "all requests": len(records),
    }


def index_rows(name: str) -> list[list[tuple[Any, ...]]]:
    with MediaIndex().connect(read_only=True) as con:
        return [
            con.execute(sql, {"c": name}).fetchall()
            for sql in (
                "SELECT key, size, etag, deleted, moved_to, moved_from, accepted FROM objects "
                "WHERE connection = $c ORDER BY key",
                "SELECT * EXCLUDE (connection, probed_at) FROM media WHERE connection = $c ORDER BY key",
                "SELECT key, rule, message FROM violations WHERE connection = $c ORDER BY ALL",
            )
        ]


def sync_kind(name: str) -> str:
    with MediaIndex().connect(read_only=True) as con:
        row = con.execute(
            "SELECT sync_kind FROM syncs WHERE connection = $c ORDER BY finished_at DESC LIMIT 1", {"c": name}
        ).fetchone()
    return row[0] if row else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="objects in the bucket")
    parser.add_argument("--new", type=int, default=4)
    parser.add_argument("--overwrite", type=int, default=3)
    parser.add_argument("--delete", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="delta-bench-") as tmp:
        work = Path(tmp)
        os.environ.update(
            BUCKET_SYNC_HOME=str(work / "home"),
            BUCKET_SYNC_CATALOG=str(work / "catalog.yaml"),
            BENCH_KEY=KEY,
            BENCH_SECRET=SECRET,
        )
        os.environ.pop("BUCKET_SYNC_STATE", None)
        os.environ.pop("BUCKET_SYNC_INDEX", None)
        server = start_moto(work)
        try:
            clients = {"endpoint_url": server.endpoint, "aws_access_key_id": KEY, "aws_secret_access_key": SECRET}
            s3 = boto3.client("s3", region_name="us-east-1", **clients)
            sqs = boto3.client("sqs", region_name="us-east-1", **clients)
            s3.create_bucket(Bucket=BUCKET)
            started = time.perf_counter()
            keys = fill(s3, args.n)
            print(f"moto: {args.n:,} objects uploaded in {time.perf_counter() - started:.1f}s")

            home, before = work / "home", work / "home-before-change"
            with instance_for_test() as instance:
                write_catalog(work, server.endpoint)
                started = time.perf_counter()
                assert run_sync(NAME, instance, log_level="ERROR").ok
                print(f"first full sync: {time.perf_counter() - started:.1f}s")
                shutil.copytree(home, before)

                queue = notify(s3, sqs)
                drain(sqs, queue)  # moto's s3:TestEvent, if any
                base = base_jpeg()
                for i in range(args.new):
                    s3.put_object(Bucket=BUCKET, Key=f"set/new/{i:03d}.jpg", Body=varied(base, args.n + i))
                for i, key in enumerate(keys[REAL_JPEGS : REAL_JPEGS + args.overwrite]):
                    s3.put_object(Bucket=BUCKET, Key=key, Body=synth.jpeg(200 + i, 150, orientation=6, seed=99 + i))
                for key in keys[-args.delete :] if args.delete else []:
                    s3.delete_object(Bucket=BUCKET, Key=key)
                events, ids = drain(sqs, queue)
                batch = EventBatch(
                    connection=NAME, batch_id=EventBatch.id_for(ids), received_at=datetime.now(UTC), events=events
                )
                batch.save(StateStore())
                print(f"SQS: {len(ids)} messages, {len(events)} events, {len(batch.keys)} distinct keys")

                figures: dict[str, dict[str, int]] = {}
                rows: dict[str, list[list[tuple[Any, ...]]]] = {}
                with FaultProxy(server.endpoint, provider="s3") as proxy:
                    write_catalog(work, proxy.endpoint)
                    for kind, event_batch in (("delta", batch.batch_id), ("full", None)):
                        if kind == "full":  # back to the state the first sync left: the same change, synced in full
                            shutil.rmtree(home)
                            shutil.copytree(before, home)
                        proxy.clear()
                        started = time.perf_counter()
                        outcome = run_sync(NAME, instance, log_level="ERROR", event_batch=event_batch)
                        seconds = time.perf_counter() - started
                        assert outcome.ok, outcome.failures
                        figures[kind] = {**wire(proxy.requests), "run wall ms": round(seconds * 1000)}
                        rows[kind] = index_rows(NAME)
                        assert sync_kind(NAME) == kind

        finally:
            server.stop()

    print(f"\n{args.n:,} objects; {args.new} new, {args.overwrite} overwritten, {args.delete} deleted")
    print(f"{'at the wire':<26}{'delta sync':>14}{'full sync':>14}")
    for metric in figures["delta"]:
        print(f"{metric:<26}{figures['delta'][metric]:>14,}{figures['full'][metric]:>14,}")
    print(f"index rows (objects, media, violations) equal after both: {rows['delta'] == rows['full']}")


if __name__ == "__main__":
    main()
