"""The same sync into a DuckDB-file index and into a DuckLake index (catalog in a throwaway PostgreSQL, data files in a
folder): wall seconds of a first sync, of a re-sync after a few changes, and of the index step alone.

A local folder of N small JPEGs is synced once per backend, each with its own BUCKET_SYNC_HOME, so only the index
differs. Run with `python benchmarks/index_backends.py --n 300`.
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

from dagster import DagsterEventType, instance_for_test  # noqa: E402

from demo import synth  # noqa: E402
from pipelines.runner import run_sync  # noqa: E402
from resources.catalog import dump_catalog  # noqa: E402
from tests.servers import create_database, start_postgres  # noqa: E402


def index_step_seconds(instance, run_id: str) -> float:  # type: ignore[no-untyped-def]
    events = instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS})
    times = {(e.step_key, e.dagster_event.event_type): e.timestamp for e in events if e.step_key == "media_index"}
    return times[("media_index", DagsterEventType.STEP_SUCCESS)] - times[("media_index", DagsterEventType.STEP_START)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="objects in the folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bucket-sync-index-bench-") as tmp:
        work = Path(tmp)
        root = work / "bucket"
        root.mkdir()
        for i in range(args.n):
            (root / f"{i:05d}.jpg").write_bytes(synth.jpeg(64, 48, orientation=6 if i % 10 == 0 else 1, seed=i))
        (work / "catalog.yaml").write_text(dump_catalog([{"name": "bench", "provider": "local", "root": str(root)}]))
        os.environ["BUCKET_SYNC_CATALOG"] = str(work / "catalog.yaml")
        postgres = start_postgres(work)
        try:
            lake = "ducklake:postgres:" + create_database(postgres, "bench")
            os.environ["PGPASSWORD"] = postgres.extra["password"]
            backends = {
                "duckdb-file": {"BUCKET_SYNC_HOME": str(work / "file-home")},
                "ducklake": {
                    "BUCKET_SYNC_HOME": str(work / "lake-home"),
                    "BUCKET_SYNC_INDEX": lake,
                    "BUCKET_SYNC_INDEX_DATA": str(work / "lake-data"),
                },
            }
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in backends}
            with instance_for_test() as instance:
                for round_ in ("first", "re-sync"):
                    if round_ == "re-sync":
                        for i in range(0, args.n, 25):
                            (root / f"{i:05d}.jpg").write_bytes(synth.jpeg(80, 60, seed=10_000 + i))
                        (root / "00001.jpg").unlink()
                    for name, env in backends.items():
                        for var in ("BUCKET_SYNC_INDEX", "BUCKET_SYNC_INDEX_DATA"):
                            os.environ.pop(var, None)
                        os.environ.update(env)
                        started = time.monotonic()
                        outcome = run_sync("bench", instance, log_level="ERROR")
                        wall = time.monotonic() - started
                        assert outcome.ok, outcome.failures
                        results[name].append((wall, index_step_seconds(instance, outcome.result.run_id)))
        finally:
            postgres.stop()
    print(f"{args.n} objects, local folder; wall seconds of the whole sync (the media_index step alone):")
    for name, rounds in results.items():
        cells = ", ".join(
            f"{label} {w:.1f}s ({i:.2f}s)" for label, (w, i) in zip(("first", "re-sync"), rounds, strict=True)
        )
        print(f"  {name:12s} {cells}")


if __name__ == "__main__":
    main()
