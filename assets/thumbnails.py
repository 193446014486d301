"""The thumbnails snapshot: the embedded EXIF thumbnail of each object with a violation, for the report to show.

Kept in the state store (`SnapshotKeys.thumbnails`, a Parquet file of key and JPEG bytes), never only on the disk
of the machine that probed: the report is rendered by the index step, or later by `bucket-sync report` anywhere.
Only objects with a violation keep theirs, so the file stays small whatever the bucket holds; an object carried
forward unchanged keeps the thumbnail its earlier probe found, since its bytes are not read again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from resources.scratch import atomic_path

THUMBNAILS_SCHEMA = pa.schema([("key", pa.string()), ("thumbnail", pa.binary())])
#: Thumbnails kept from one sync's probes: a bound on the step's memory for a bucket where most objects break a rule
#: (the report shows at most this many pictures; every violation still gets its row).
MAX_FRESH = 5000


class ThumbnailCollector:
    """The thumbnails of this sync's probed objects that have a violation, up to MAX_FRESH."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, key: str, thumbnail: bytes | None) -> None:
        if thumbnail and len(self.rows) < MAX_FRESH:
            self.rows.append({"key": key, "thumbnail": thumbnail})

    def write(self, path: Path) -> Path:
        pq.write_table(pa.Table.from_pylist(self.rows, schema=THUMBNAILS_SCHEMA), path)
        return path


def merge_thumbnails(
    con: duckdb.DuckDBPyConnection, fresh: Path, previous: Path | None, probes: Path, violations: Path, target: Path
) -> int:
    """Write `target`: this sync's fresh thumbnails, plus the previous snapshot's for objects that were not read
    again and still have a violation. Returns how many thumbnails it holds."""
    parts = ["SELECT key, thumbnail FROM read_parquet($fresh)"]
    params = {"fresh": str(fresh)}
    if previous is not None:
        parts.append(
            """
            SELECT t.key, t.thumbnail FROM read_parquet($previous) t
            WHERE t.key IN (SELECT key FROM read_parquet($violations))
              AND t.key IN (SELECT key FROM read_parquet($probes) WHERE source <> 'probed')
              AND t.key NOT IN (SELECT key FROM read_parquet($fresh))
            """
        )
        params |= {"previous": str(previous), "violations": str(violations), "probes": str(probes)}
    query = con.sql(" UNION ALL ".join(parts) + " ORDER BY key", params=params)
    with atomic_path(target) as tmp:
        query.write_parquet(str(tmp))
    return int(con.execute("SELECT count(*) FROM read_parquet($t)", {"t": str(target)}).fetchone()[0])


def read_thumbnails(path: Path) -> dict[str, bytes]:
    """key -> embedded thumbnail, from a thumbnails snapshot fetched from the state store."""
    table = pq.read_table(path)
    return dict(zip(table.column("key").to_pylist(), table.column("thumbnail").to_pylist(), strict=True))
