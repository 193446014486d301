"""Listing and diff at scale: time and peak memory of streaming N keys to Parquet and diffing them in DuckDB.

A synthetic provider serves the listing (no storage involved), so the figures isolate bucket-sync's own listing
path: `write_listing` (filtering, Parquet streaming) and `diff_listing` (new / changed / unchanged / deleted /
moved, out of core in DuckDB). The second listing changes 1% of etags, deletes 1% and renames 1% of keys.
Run with `python benchmarks/listing_scale.py --n 2000000`; compare peak RSS across --n to see it stay flat.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402

from assets.listing import diff_listing, write_listing  # noqa: E402
from resources.bucket import LISTING_SCHEMA  # noqa: E402
from resources.catalog import Connection  # noqa: E402

PAGE = 1000


class SyntheticBucket:
    """Pages of keys like a real provider's, generated on the fly; `generation` 1 perturbs a few percent."""

    def __init__(self, n: int, generation: int) -> None:
        self.n, self.generation = n, generation

    def iter_listing(self, prefix: str, page_size: int = PAGE) -> Iterator[pa.RecordBatch]:
        stamp = datetime(2026, 1, 1, tzinfo=UTC)
        for start in range(0, self.n, page_size):
            keys, etags, sizes = [], [], []
            for i in range(start, min(self.n, start + page_size)):
                if self.generation and i % 100 == 1:
                    continue  # deleted
                key = f"{prefix}shoot-{i // 1000:05d}/IMG_{i:08d}.jpg"
                if self.generation and i % 100 == 2:
                    key = f"{prefix}renamed/IMG_{i:08d}.jpg"  # same content, new key
                keys.append(key)
                sizes.append(2_000_000 + i % 1000)
                etags.append(f'"{i:032x}"' if not (self.generation and i % 100 == 3) else f'"{i + 1:032x}"')
            count = len(keys)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(keys),
                    pa.array(sizes, pa.int64()),
                    pa.array(etags),
                    pa.array([stamp] * count, pa.timestamp("us", tz="UTC")),
                    pa.nulls(count, pa.string()),
                    pa.array([e.strip('"') for e in etags]),
                ],
                schema=LISTING_SCHEMA,
            )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="keys in the bucket")
    args = parser.parse_args()
    conn = Connection(name="scale", provider="local", root=".", prefix="data/")
    with tempfile.TemporaryDirectory(prefix="bucket-sync-scale-") as tmp:
        work = Path(tmp)
        listing, baseline, changes = work / "listing.parquet", work / "baseline.parquet", work / "changes.parquet"
        for generation, label in ((0, "first listing"), (1, "re-listing")):
            started = time.perf_counter()
            seen = write_listing(SyntheticBucket(args.n, generation), conn, listing)  # type: ignore[arg-type]
            listed_s = time.perf_counter() - started
            started = time.perf_counter()
            counts = diff_listing(listing, baseline, changes)
            diff_s = time.perf_counter() - started
            listing.replace(baseline)
            rate = seen["listed"] / listed_s
            print(
                f"{label:>13}: {seen['listed']:,} keys | write {listed_s:5.1f}s ({rate:,.0f} keys/s)"
                f" | diff {diff_s:5.2f}s | new {counts['new']:,} changed {counts['changed']:,} deleted "
                f"{counts['deleted']:,} moved {counts['moved']:,} | peak RSS {peak_rss_mib():,.0f} MiB"
            )


if __name__ == "__main__":
    main()
