"""Probe throughput: sync N realistic camera-like JPEGs on the local provider and on an S3 emulator (moto).

Prints, per provider: objects per second for the probe step and for the whole sync, bytes read per object (median
and p99) against the median object size, and requests per object. Run with `make bench` or
`python benchmarks/probe_throughput.py --n 400`. Figures depend on the machine; compare runs on the same one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from dagster import DagsterEventType, DagsterInstance, instance_for_test  # noqa: E402

from benchmarks.emulators import BUCKET, s3_entry, start_s3_bucket  # noqa: E402
from demo import synth  # noqa: E402
from pipelines.runner import run_sync  # noqa: E402
from resources.index_resource import MediaIndex  # noqa: E402


def camera_jpegs(variants: int) -> list[bytes]:
    """Distinct 3000x2000 JPEGs with camera-sized EXIF blocks (maker notes, a thumbnail's worth of bytes)."""
    return [
        synth.jpeg(3000, 2000, orientation=1 + (i % 2) * 5, exif_extra_bytes=8_000 + 4_000 * i, seed=i, quality=90)
        for i in range(variants)
    ]


def step_seconds(instance: DagsterInstance, run_id: str, step: str) -> float:
    """Wall time of one step, from the run's event log."""
    times = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if (
            event
            and event.step_key == step
            and event.event_type in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS)
        ):
            times[event.event_type] = entry.timestamp
    return times[DagsterEventType.STEP_SUCCESS] - times[DagsterEventType.STEP_START]


def measure(label: str, entry: dict, n: int, work: Path) -> None:
    home = work / f"home-{label}"
    catalog = work / f"catalog-{label}.yaml"
    catalog.write_text(yaml.safe_dump({"connections": [entry]}))
    os.environ["BUCKET_SYNC_HOME"], os.environ["BUCKET_SYNC_CATALOG"] = str(home), str(catalog)
    with instance_for_test() as instance:
        started = time.perf_counter()
        outcome = run_sync(entry["name"], instance, log_level="ERROR")
        total = time.perf_counter() - started
        assert outcome.ok, outcome.failures
        probe_s = step_seconds(instance, outcome.result.run_id, "media_probes")
        started = time.perf_counter()
        again = run_sync(entry["name"], instance, log_level="ERROR")
        resync = time.perf_counter() - started
        assert again.ok, again.failures
    with MediaIndex(url=str(home / "index.duckdb")).connect(read_only=True) as con:
        rows = con.execute(
            "SELECT m.bytes_read, m.requests, o.size FROM media m JOIN objects o USING (connection, key)"
        ).fetchall()
    read = sorted(r[0] for r in rows)
    requests = [r[1] for r in rows]
    sizes = sorted(r[2] for r in rows)
    p99 = read[min(len(read) - 1, int(0.99 * len(read)))]
    print(
        f"{label:>5}: {n} objects | probe step {n / probe_s:8.1f} obj/s ({probe_s:.2f}s) | whole sync "
        f"{n / total:7.1f} obj/s ({total:.2f}s) | bytes read/object median {statistics.median(read):,.0f} "
        f"p99 {p99:,} of median size {statistics.median(sizes):,.0f} | requests/object "
        f"{statistics.mean(requests):.2f} | unchanged re-sync {resync:.2f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="objects per provider")
    parser.add_argument("--variants", type=int, default=8, help="distinct images, cycled")
    args = parser.parse_args()
    images = camera_jpegs(args.variants)
    print(f"{args.n} camera-like JPEGs, 3000x2000, {statistics.mean(map(len, images)):,.0f} bytes on average")
    with tempfile.TemporaryDirectory(prefix="bucket-sync-bench-") as tmp:
        work = Path(tmp)
        root = work / "bucket"
        for i in range(args.n):
            path = root / f"shoot-{i // 100:03d}" / f"IMG_{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(images[i % len(images)])
        measure("local", {"name": "bench-local", "provider": "local", "root": str(root)}, args.n, work)

        logs = work / "logs"
        logs.mkdir()
        server, s3 = start_s3_bucket(logs)
        try:
            for path in sorted(root.rglob("*.jpg")):
                s3.put_object(Bucket=BUCKET, Key=str(path.relative_to(root)), Body=path.read_bytes())
            entry = s3_entry("bench-s3", server.endpoint)
            measure("s3", entry, args.n, work)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
