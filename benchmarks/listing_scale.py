"""Listing and diff at scale: CPU time and peak memory of streaming N keys to Parquet and diffing them in DuckDB.

A synthetic provider serves the listing (no storage involved), so the figures isolate bucket-sync's own listing
path: `write_listing` (filtering, Parquet streaming) and `diff_listing` (new / changed / unchanged / deleted /
moved, out of core in DuckDB). The second listing changes 1% of etags, deletes 1% and renames 1% of keys.

Each N runs in a process of its own, so the peak RSS (ru_maxrss) printed for it is that N's alone; the parent prints
them side by side against the target (500 MB peak at 1,000,000 keys, and flat as N grows). Peak RSS is read after
each step: the first listing, its diff (no baseline), the re-listing and its diff against the first. Run with
`python benchmarks/listing_scale.py --n 250000 1000000 2000000`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402

from resources.bucket import LISTING_SCHEMA  # noqa: E402

PAGE = 1000
TARGET_MIB = 500e6 / 2**20  # 500 MB
STEPS = ("first listing", "first diff", "re-listing", "re-listing diff")


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


def measure(n: int) -> dict[str, object]:
    """One N, in this process: CPU seconds and peak RSS after each step, and the counts the diffs found."""
    from assets.listing import diff_listing, write_listing  # what the listing asset runs, in the same order
    from resources.catalog import Connection

    conn = Connection(name="scale", provider="local", root=".", prefix="data/")
    # The floor: the interpreter with Dagster, pyarrow and DuckDB loaded, and one page built (pyarrow imports pandas
    # the first time it converts Python objects), before any listing is held.
    next(SyntheticBucket(1, 0).iter_listing("data/"))
    report: dict[str, object] = {"n": n, "floor_mib": peak_rss_mib(), "steps": []}
    steps: list[dict[str, object]] = report["steps"]  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="bucket-sync-scale-") as tmp:
        work = Path(tmp)
        listing, baseline, changes = work / "listing.parquet", work / "baseline.parquet", work / "changes.parquet"
        for generation, (listed_label, diff_label) in enumerate((STEPS[:2], STEPS[2:])):
            started = time.process_time()
            seen = write_listing(SyntheticBucket(n, generation), conn, listing)  # type: ignore[arg-type]
            steps.append({"step": listed_label, "cpu_s": time.process_time() - started, "peak_mib": peak_rss_mib()})
            started = time.process_time()
            counts = diff_listing(listing, baseline, changes)
            steps.append(
                {"step": diff_label, "cpu_s": time.process_time() - started, "peak_mib": peak_rss_mib(), **counts}
            )
            assert counts["listed"] == seen["listed"], (counts, seen)
            listing.replace(baseline)
    return report


def run_child(n: int) -> dict[str, object]:
    """`measure(n)` in a fresh interpreter: ru_maxrss never goes down, so each N needs a process of its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n)], check=True, capture_output=True, text=True, env=os.environ
    )
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[250_000, 1_000_000], help="keys in the bucket")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    cap = os.environ.get("BUCKET_SYNC_DUCKDB_MEMORY", "the listing default")
    print(f"peak RSS per step, each N in its own process; target {TARGET_MIB:.0f} MiB (500 MB); DuckDB cap: {cap}")
    peaks: dict[int, float] = {}
    for n in args.n:
        report = run_child(n)
        floor = float(report["floor_mib"])  # type: ignore[arg-type]
        print(f"\nN = {n:,} keys (imports and first page: {floor:,.0f} MiB)")
        for step in report["steps"]:  # type: ignore[attr-defined]
            found = ""
            if "new" in step:
                found = (
                    f" | new {step['new']:,} changed {step['changed']:,} deleted {step['deleted']:,}"
                    f" moved {step['moved']:,}"
                )
            print(
                f"  {step['step']:>15}: {step['cpu_s']:6.1f} CPU s | peak RSS {step['peak_mib']:6,.0f} MiB"
                f" ({step['peak_mib'] - floor:+5,.0f} over the floor){found}"
            )
        peaks[n] = max(float(step["peak_mib"]) for step in report["steps"])  # type: ignore[attr-defined]
        verdict = "within" if peaks[n] <= TARGET_MIB else "OVER"
        print(f"  peak {peaks[n]:,.0f} MiB: {verdict} the {TARGET_MIB:.0f} MiB target")
    print()
    ordered = sorted(peaks)
    for smaller, larger in pairwise(ordered):
        print(
            f"flatness: {larger / smaller:.0f}x the keys ({smaller:,} -> {larger:,}), "
            f"{peaks[larger] / peaks[smaller]:.2f}x the peak ({peaks[smaller]:,.0f} -> {peaks[larger]:,.0f} MiB)"
        )


if __name__ == "__main__":
    main()
