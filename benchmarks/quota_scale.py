"""Quota admission at scale: CPU time and peak memory of `admit` over the diff of a first listing of N keys.

A first sync is the worst case for a quota: every key is fresh and competes. The listing is synthetic (random sizes,
keys in random order) and diffed by the real `diff_listing`; only `admit` is timed. Two quotas per N, each in a
process of its own; its peak RSS (ru_maxrss, after admission) covers the whole listing step's work (making the
listing, the diff and admission), to set against the listing step's 500 MB target (benchmarks/listing_scale.py):

- `max_objects`: half the keys. The fresh keys are read as a top-N in key order (memory grows with the quota).
- `max_bytes`: half the bytes, no object cap. The fresh keys are sorted by DuckDB under its memory cap (spilling)
  and read as a stream until the cutoff.

Run with `python benchmarks/quota_scale.py --n 250000 1000000`. On the 2-core development machine (shared):
1,000,000 keys took 4.7 s of CPU with max_objects and 4.5 s with max_bytes, peaks 393 and 378 MiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from resources.bucket import LISTING_SCHEMA  # noqa: E402

MODES = ("max_objects", "max_bytes")


def write_listing(path: Path, n: int) -> int:
    """N keys in random order with sizes of 10 KB to 5 MB, in row groups; returns the total bytes."""
    rng = np.random.default_rng(7)
    order = rng.permutation(n)
    sizes = rng.integers(10_000, 5_000_000, n)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    with pq.ParquetWriter(path, LISTING_SCHEMA) as writer:
        for start in range(0, n, 100_000):
            part = order[start : start + 100_000]
            table = pa.table(
                {
                    "key": [f"images/{i // 1000:05d}/{i:09d}.jpg" for i in part],
                    "size": sizes[start : start + 100_000],
                    "etag": [f"{i:032x}" for i in part],
                    "last_modified": [when] * len(part),
                    "version": [None] * len(part),
                    "content_md5": [None] * len(part),
                },
                schema=LISTING_SCHEMA,
            )
            writer.write_table(table)
    return int(sizes.sum())


def measure(n: int, mode: str) -> dict[str, float | int | str]:
    """One admission, in this process: the figures of `admit` alone."""
    from assets.listing import diff_listing
    from assets.quota import admit

    with tempfile.TemporaryDirectory(prefix="quota-bench-") as folder:
        root = Path(folder)
        listing, changes = root / "listing.parquet", root / "changes.parquet"
        total = write_listing(listing, n)
        diff_listing(listing, root / "baseline.parquet", changes)
        limits = {"max_objects": n // 2, "max_bytes": None} if mode == "max_objects" else {
            "max_objects": None, "max_bytes": total // 2}  # fmt: skip
        cpu, wall = time.process_time(), time.perf_counter()
        state = admit(listing, changes, root / "skipped.parquet", **limits)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**20
    return {"n": n, "mode": mode, "admitted": state.admitted, "skipped": state.skipped, "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2), "peak_mib": round(peak, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[250_000])
    parser.add_argument("--one", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1])))
        return
    print(f"{'keys':>10} {'quota':>12} {'admitted':>10} {'skipped':>10} {'cpu s':>7} {'wall s':>7} {'peak MiB':>9}")
    for n in args.n:
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(n), mode], check=True, capture_output=True, text=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{r['n']:>10,} {r['mode']:>12} {r['admitted']:>10,} {r['skipped']:>10,} {r['cpu_s']:>7} "
                f"{r['wall_s']:>7} {r['peak_mib']:>9}"
            )


if __name__ == "__main__":
    main()
