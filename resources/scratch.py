"""Local scratch files: the working copies a step makes in its scratch folder (resources/state.py).

What a step writes locally is written under a temporary name and renamed into place, so a process killed half-way
never leaves a truncated file that a later call could mistake for a whole one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename, on failure it vanishes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with tmp_path.open("rb+") as f:
            os.fsync(f.fileno())
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)


#: DuckDB's cap for work over Parquet snapshots (plans, manifests) unless the caller or the environment says otherwise.
SCRATCH_MEMORY = "512MB"


def scratch_duckdb(spill_dir: Path, memory_limit: str = SCRATCH_MEMORY) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session for work over Parquet snapshots, capped in memory and spilling to disk.

    Diffs and plans join listings of tens of millions of keys; with DuckDB's default (80% of RAM) they would grow
    with the bucket. The cap makes them spill to `spill_dir` instead, so a sync's memory stays flat however large
    the bucket: `memory_limit` is the caller's budget, and $BUCKET_SYNC_DUCKDB_MEMORY, when set, replaces every
    caller's (an operator who sizes a machine decides for all of them). Queries that need an order say ORDER BY.
    """
    spill_dir.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        config={
            "memory_limit": os.environ.get("BUCKET_SYNC_DUCKDB_MEMORY") or memory_limit,
            "temp_directory": str(spill_dir),
            "preserve_insertion_order": False,
        }
    )


#: Rows per Parquet row group that DuckDB writes. Its default (122,880) buffers that many rows per thread before a
#: group is flushed, which alone overran a small memory cap; at this size a group of listing rows is a few MiB.
ROW_GROUP_ROWS = 16_384


def write_parquet(con: duckdb.DuckDBPyConnection, sql: str, target: Path, params: dict[str, Any] | None = None) -> None:
    """Write the result of `sql` to `target` as Parquet, in row groups small enough to keep the writer's buffer flat.

    Values (keys, names) travel in `params`, never as SQL text."""
    copy = f"COPY ({sql}) TO '{_sql_string(str(target))}' (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
    con.execute(copy, params or {})


def _sql_string(text: str) -> str:
    return text.replace("'", "''")
