"""Where bucket-sync keeps its state: `BUCKET_SYNC_HOME` (default `./.bucket-sync/`).

    index.duckdb                       the index people query
    manifests/<connection>/manifest.jsonl
    snapshots/<connection>/            listing, changes, probes and violations of the latest sync, as Parquet,
                                       baseline.parquet: the listing of the last sync that reached the index,
                                       and manifest.<run id>.jsonl: a manifest staged until its sync is indexed

Every file here is replaced by an atomic rename, so a reader (or a sync killed half-way) only ever sees a whole file.
A killed process can leave the temporary files of those renames behind (`.<name>.<random>.tmp`); the next sync of the
connection removes them (`remove_leftovers`), since no other run can be writing them then.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster import ConfigurableResource
from pydantic import Field


def default_home() -> str:
    return os.environ.get("BUCKET_SYNC_HOME", ".bucket-sync")


TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename, on failure it vanishes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with tmp_path.open("rb+") as f:
            os.fsync(f.fileno())
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)


class SyncHome(ConfigurableResource):
    """The folder that holds the index, the manifests and the per-connection snapshots."""

    path: str | None = Field(None, description="default $BUCKET_SYNC_HOME or ./.bucket-sync")

    @property
    def root(self) -> Path:
        return Path(self.path or default_home()).resolve()

    @property
    def index_path(self) -> Path:
        return self.root / "index.duckdb"

    def manifest_path(self, connection: str) -> Path:
        return self.root / "manifests" / connection / "manifest.jsonl"

    def staged_manifest(self, connection: str, run_id: str) -> Path:
        """The manifest a run wrote, kept beside the snapshots until its sync is in the index, then published."""
        return self.snapshot_dir(connection) / f"manifest.{run_id}.jsonl"

    def staged_manifests(self, connection: str) -> list[Path]:
        return sorted(self.snapshot_dir(connection).glob("manifest.*.jsonl"))

    def snapshot_dir(self, connection: str) -> Path:
        folder = self.root / "snapshots" / connection
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def remove_leftovers(self, connection: str) -> list[Path]:
        """Delete what killed runs of `connection` left: temporary files of unfinished atomic writes and DuckDB spill.

        Call only while no other run syncs the connection (the listing step's overlap guard holds then).
        """
        removed: list[Path] = []
        for folder in (self.root / "snapshots" / connection, self.manifest_path(connection).parent):
            if not folder.is_dir():
                continue
            for path in folder.rglob(f".*{TMP_SUFFIX}"):
                path.unlink(missing_ok=True)
                removed.append(path)
            spill = folder / ".spill"
            if spill.is_dir():
                removed.extend(p for p in spill.rglob("*") if p.is_file())
                shutil.rmtree(spill, ignore_errors=True)
        return removed

    def snapshot(self, connection: str, name: str) -> Path:
        """`name` is one of listing, changes, probes, violations, baseline (Parquet) or state (JSON)."""
        return self.snapshot_dir(connection) / (f"{name}.json" if name == "state" else f"{name}.parquet")


def scratch_duckdb(spill_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session for work over Parquet snapshots, capped in memory and spilling to disk.

    Diffs and plans join listings of tens of millions of keys; with DuckDB's default (80% of RAM) they would grow
    with the bucket. The cap ($BUCKET_SYNC_DUCKDB_MEMORY, default 512MB) makes them spill to `spill_dir` instead,
    so a sync's memory stays flat however large the bucket. Queries that need an order say ORDER BY.
    """
    spill_dir.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        config={
            "memory_limit": os.environ.get("BUCKET_SYNC_DUCKDB_MEMORY", "512MB"),
            "temp_directory": str(spill_dir),
            "preserve_insertion_order": False,
        }
    )
