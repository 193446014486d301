"""First sync against an unchanged re-sync of the same bucket: wall time and requests, counted at the wire.

N camera-like JPEGs sit in an S3 emulator (moto) behind the recording proxy from the test suite, so the request
counts are what reached the server, not what our code believes it sent. Run with
`python benchmarks/resync.py --n 1000`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import yaml  # noqa: E402
from dagster import instance_for_test  # noqa: E402

from demo import synth  # noqa: E402
from pipelines.runner import run_sync  # noqa: E402
from tests.proxy import FaultProxy  # noqa: E402
from tests.servers import start_moto  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="objects in the bucket")
    args = parser.parse_args()
    images = [synth.jpeg(1600, 1200, orientation=1, exif_extra_bytes=6_000 * (i + 1), seed=i) for i in range(4)]
    with tempfile.TemporaryDirectory(prefix="bucket-sync-resync-") as tmp:
        work = Path(tmp)
        server = start_moto(work)
        try:
            s3 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id="b", aws_secret_access_key="b")
            s3.create_bucket(Bucket="resync")
            for i in range(args.n):
                s3.put_object(Bucket="resync", Key=f"set/{i:06d}.jpg", Body=images[i % len(images)])
            os.environ.update(BENCH_KEY="b", BENCH_SECRET="b", BUCKET_SYNC_HOME=str(work / "home"))
            with FaultProxy(server.endpoint, provider="s3") as proxy:
                entry = {
                    "name": "resync",
                    "provider": "s3",
                    "bucket": "resync",
                    "options": {"endpoint": proxy.endpoint, "path_style": True},
                    "auth": {"mode": "keys", "access_key_id_env": "BENCH_KEY", "secret_access_key_env": "BENCH_SECRET"},
                }
                (work / "catalog.yaml").write_text(yaml.safe_dump({"connections": [entry]}))
                os.environ["BUCKET_SYNC_CATALOG"] = str(work / "catalog.yaml")
                with instance_for_test() as instance:
                    for label in ("first sync", "unchanged re-sync"):
                        proxy.clear()
                        started = time.perf_counter()
                        outcome = run_sync("resync", instance, log_level="ERROR")
                        seconds = time.perf_counter() - started
                        assert outcome.ok, outcome.failures
                        reads, lists = len(proxy.object_reads()), len(proxy.listings())
                        print(
                            f"{label:>18}: {args.n} objects in {seconds:6.2f}s | {lists} list requests, "
                            f"{reads} object reads ({reads / args.n:.2f} per object), "
                            f"{len(proxy.requests)} requests in all"
                        )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
