"""What one `bucket_events` tick costs at the default `max_messages` (1,000): time and CPU, SQS calls, cursor size.

Against moto's S3 and SQS (real bucket notifications): `--n` objects are uploaded (one ObjectCreated message each),
then the sensor's per-connection step (`pipelines.event_sensor.drain`, the same code the sensor runs) drains the queue
tick by tick, a run counting as requested from the tick after its request (as the daemon creates it). Per tick it
prints messages received and acknowledged, seconds and CPU seconds of this process (moto runs in its own), the SQS
calls made, and the size of the sensor cursor that carries the acknowledgement tokens. A tick must stay well inside
Dagster's 60 s sensor timeout: receiving stops at the sensor's budget (RECEIVE_BUDGET_S) even when `max_messages` is
not reached, and the figures say how far inside the timeout a tick stays. Figures depend on the machine and its load
(moto answers far slower than SQS per call); compare runs on the same one.

Run with `.venv/bin/python benchmarks/event_drain.py [--n 1000]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from pipelines.event_sensor import RECEIVE_BUDGET_S, drain, dump_cursor  # noqa: E402
from resources.catalog import Connection  # noqa: E402
from resources.event_queues import SQSQueue, open_queue  # noqa: E402
from resources.state import StateStore  # noqa: E402
from tests.servers import start_moto  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="objects uploaded, one event message each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        work = Path(tmp)
        server = start_moto(work)
        try:
            os.environ["BENCH_S3_KEY"], os.environ["BENCH_S3_SECRET"] = "bench", "bench-secret"
            keys = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret", "region_name": "us-east-1"}
            s3 = boto3.client("s3", endpoint_url=server.endpoint, **keys)
            sqs = boto3.client("sqs", endpoint_url=server.endpoint, **keys)
            s3.create_bucket(Bucket="bench")
            url = sqs.create_queue(QueueName="bench-events")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            s3.put_bucket_notification_configuration(
                Bucket="bench",
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
            for i in range(args.n):
                s3.put_object(Bucket="bench", Key=f"shoot/IMG_{i:05d}.jpg", Body=b"x")
            conn = Connection(
                name="bench",
                provider="s3",
                bucket="bench",
                options={"endpoint": server.endpoint, "path_style": True},
                auth={"mode": "keys", "access_key_id_env": "BENCH_S3_KEY", "secret_access_key_env": "BENCH_S3_SECRET"},
                events={"queue": url},
            )
            queue = open_queue(conn)
            assert isinstance(queue, SQSQueue)
            calls: Counter[str] = Counter()
            queue.client.meta.events.register("before-call.sqs", lambda model, **_: calls.update([model.name]))
            store = StateStore(url=str(work / "state"))
            requested: set[str] = set()
            pending: list = []
            print(f"{args.n} S3 notifications in moto's SQS; max_messages {conn.events.max_messages} per tick")
            print(f"{'tick':>4} {'received':>8} {'acked':>6} {'seconds':>8} {'cpu s':>6} {'SQS calls':<40} cursor")
            number = 0
            while number < 3 or pending:  # until everything received has been acknowledged
                number += 1
                calls.clear()
                wall, cpu = time.perf_counter(), time.process_time()
                deadline = time.monotonic() + RECEIVE_BUDGET_S  # as the sensor gives each tick
                out = drain(conn, queue, store, requested.__contains__, pending, datetime.now(UTC), deadline)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                received = sum(len(b.tokens) for b in out.pending if b not in pending)
                cursor = len(dump_cursor({conn.name: out.pending}).encode())
                made = ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))
                print(f"{number:>4} {received:>8} {out.acked:>6} {wall:>8.2f} {cpu:>6.2f} {made:<40} {cursor:,} B")
                if out.request is not None:
                    requested.add(out.request.run_key or "")
                pending = out.pending
        finally:
            server.stop()


if __name__ == "__main__":
    main()
