"""The columns of a probe result are declared once (media.facts) and every place that stores them agrees.

The probes Parquet schema and the index's `media` DDL are derived from FACT_SCHEMA; these tests derive them again and
compare, and carry one MediaFacts through the Parquet snapshot and the index to see it come back unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, get_args

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.probes import ARROW_TYPES, PROBES_SCHEMA, VIOLATIONS_SCHEMA, _plan, carry_verdicts
from media.facts import FACT_COLUMNS, FACT_SCHEMA, ColumnType, MediaFacts, declared_columns
from resources.index import MEDIA_COLUMNS, SCHEMA, SQL_TYPES, SyncCounts, SyncSnapshot, schema
from resources.index_resource import MediaIndex

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

#: The `media` columns users query (DESIGN.md, "Where things live"): new columns may follow, none may be renamed.
PUBLISHED = [
    "connection", "key", "kind", "format", "width", "height", "orientation", "display_width", "display_height",
    "major_brand", "compatible_brands", "codec", "pix_fmt", "duration_s", "frames", "rotation", "bytes_read",
    "requests", "error",
]  # fmt: skip


def media_columns(ddl: str) -> dict[str, tuple[str, bool]]:
    """The `media` table that `ddl` creates, as DuckDB itself describes it: name -> (type, nullable)."""
    con = duckdb.connect()
    con.execute(ddl)
    described = con.execute("DESCRIBE media").fetchall()
    con.close()
    return {name: (sql_type, null == "YES") for name, sql_type, null, *_ in described}


def test_every_declared_fact_is_in_the_parquet_schema_and_the_ddl() -> None:
    assert tuple(f.name for f in dataclasses.fields(MediaFacts)) == FACT_COLUMNS
    parquet_as_duckdb = duckdb.connect().from_arrow(PROBES_SCHEMA.empty_table())
    parquet_types = dict(zip(parquet_as_duckdb.columns, map(str, parquet_as_duckdb.types), strict=True))
    for ddl in (SCHEMA, schema(keys=False)):
        table = media_columns(ddl)
        for column in FACT_SCHEMA:
            assert column.name in PROBES_SCHEMA.names, f"{column.name} is missing from the probes Parquet schema"
            assert PROBES_SCHEMA.field(column.name).type == ARROW_TYPES[column.type], column.name
            assert column.name in table, f"{column.name} is missing from the media table"
            assert table[column.name] == (SQL_TYPES[column.type], not column.required), column.name
            # What DuckDB reads from the Parquet column is what the index stores: no cast on the way in.
            assert parquet_types[column.name] == table[column.name][0], column.name
        assert list(table)[: len(PUBLISHED)] == PUBLISHED, "the published media columns moved or were renamed"
        assert set(MEDIA_COLUMNS.split(", ")) <= set(table)
    assert set(MEDIA_COLUMNS.split(", ")) == {*FACT_COLUMNS, "etag", "probed_at"}


def test_every_column_type_maps_to_arrow_and_duckdb() -> None:
    types = set(get_args(ColumnType))
    assert set(ARROW_TYPES) == types and set(SQL_TYPES) == types


def test_a_field_without_a_declared_column_type_is_refused() -> None:
    @dataclasses.dataclass
    class Extended(MediaFacts):
        loudness: float | None = None

    with pytest.raises(TypeError, match=r"Extended\.loudness declares no column type"):
        declared_columns(Extended)


def sample(column: str, column_type: ColumnType, salt: int) -> Any:
    """A value unlike the field's default, and wide enough to catch a narrowing on the way (int64 beyond 2**31)."""
    return {
        "string": f"{column}-{salt}",
        "int32": 1000 + salt,
        "int64": 2**40 + salt,
        "float64": 12.5 + salt,
        "string_list": [f"{column}-{salt}", "isom"],
        "keyframe_list": [{"number": 0, "pts": 0}, {"number": 30 + salt, "pts": 2**33 + salt}],
    }[column_type]


def every_fact_set(salt: int) -> MediaFacts:
    """A MediaFacts whose every declared column holds a non-default value, new fields included, by construction."""
    facts = MediaFacts(**{c.name: sample(c.name, c.type, salt) for c in FACT_SCHEMA})
    facts.kind = "video"
    return facts


def write_sync(tmp: Path, facts: MediaFacts, *, etag: str, change: str) -> SyncSnapshot:
    """The four snapshots of a one-object sync, with the probes row written exactly as media_probes writes it."""
    tmp.mkdir(parents=True, exist_ok=True)
    listing = {"key": "clips/a.mp4", "size": 4096, "etag": etag, "last_modified": T0, "version": None}
    probes_row = {
        **listing,
        "source": "probed",
        "probed_at": T0,
        "accepted": True,
        "manifest_width": None,
        "manifest_height": None,
        **facts.to_row(),
        "judged_by": "strict@test",
    }
    snapshot = SyncSnapshot(
        changes=tmp / "changes.parquet",
        probes=tmp / "probes.parquet",
        moves=tmp / "moves.parquet",
        violations=tmp / "violations.parquet",
    )
    change_row = {**listing, "content_md5": None, "moved_from": None, "moved_to": None, "change": change}
    pq.write_table(pa.Table.from_pylist([change_row]), snapshot.changes)
    pq.write_table(pa.Table.from_pylist([probes_row], schema=PROBES_SCHEMA), snapshot.probes)
    moves = pa.schema([("old_key", pa.string()), ("new_key", pa.string())])
    pq.write_table(pa.Table.from_pylist([], schema=moves), snapshot.moves)
    pq.write_table(pa.Table.from_pylist([], schema=VIOLATIONS_SCHEMA), snapshot.violations)
    return snapshot


def apply(index: MediaIndex, snapshot: SyncSnapshot, run_id: str) -> None:
    counts = SyncCounts(
        connection="clips", run_id=run_id, started_at=T0, full_resync=False, listed=1, new=1, changed=0,
        unchanged=0, deleted=0, moved=0, probed=1, carried=0, accepted=1, violations=0, bytes_stored=4096,
        bytes_read=0, requests=0,
    )  # fmt: skip
    row = {"name": "clips", "provider": "local", "location": "/data", "prefix": "", "profile": "strict"}
    index.apply_sync(row, snapshot, ("readable",), counts)


def indexed(index: MediaIndex) -> MediaFacts:
    with index.connect(read_only=True) as con:
        cursor = con.execute(f"SELECT {', '.join(FACT_COLUMNS)} FROM media WHERE key = 'clips/a.mp4'")
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    assert len(rows) == 1
    return MediaFacts.from_row(dict(zip(names, rows[0], strict=True)))


def test_facts_round_trip_through_the_parquet_snapshot_and_the_index(tmp_path: Path) -> None:
    index = MediaIndex(url=str(tmp_path / "index.duckdb"))
    first = every_fact_set(1)
    snapshot = write_sync(tmp_path / "one", first, etag="e1", change="new")
    assert MediaFacts.from_row(pq.read_table(snapshot.probes).to_pylist()[0]) == first
    apply(index, snapshot, "run-1")
    assert indexed(index) == first  # inserted

    second = every_fact_set(2)
    apply(index, write_sync(tmp_path / "two", second, etag="e2", change="changed"), "run-2")
    assert indexed(index) == second  # updated in place: every fact column is in the MERGE's SET list too


def test_an_index_made_before_a_fact_existed_gains_its_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "index.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.execute("ALTER TABLE media DROP COLUMN head_sha256")  # as an index written before head_sha256 existed
    con.execute("INSERT INTO media (connection, key, kind) VALUES ('old', 'kept.jpg', 'image')")
    con.close()

    index = MediaIndex(url=str(path))
    facts = every_fact_set(3)
    apply(index, write_sync(tmp_path / "sync", facts, etag="e1", change="new"), "run-1")
    assert indexed(index) == facts
    with index.connect(read_only=True) as con:
        assert con.execute("SELECT kind, head_sha256 FROM media WHERE key = 'kept.jpg'").fetchall() == [("image", None)]


def test_facts_snapshots_from_before_a_fact_existed_still_carry_forward(tmp_path: Path) -> None:
    """A previous probes snapshot without some fact columns plans and carries; those facts come forward as null."""
    row = {"key": "same.jpg", "size": 10, "etag": "a", "last_modified": T0, "version": None}
    changes = tmp_path / "changes.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [{**row, "content_md5": None, "moved_from": None, "moved_to": None, "change": "unchanged"}]
        ),
        changes,
    )
    older = pa.schema([f for f in PROBES_SCHEMA if f.name not in ("mode", "head_sha256")])
    previous, previous_violations = tmp_path / "previous.parquet", tmp_path / "previous-violations.parquet"
    old_row = {**row, "source": "probed", "probed_at": T0, "accepted": True, "kind": "image", "judged_by": "j"}
    pq.write_table(pa.Table.from_pylist([old_row], schema=older), previous)
    pq.write_table(pa.Table.from_pylist([], schema=VIOLATIONS_SCHEMA), previous_violations)

    con = _plan(changes, [previous])
    carried, carried_violations = tmp_path / "carried.parquet", tmp_path / "carried-violations.parquet"
    assert carry_verdicts(con, previous, previous_violations, "j", carried, carried_violations) == 1
    con.close()
    table = pq.read_table(carried)
    assert table.schema.field("head_sha256").type == PROBES_SCHEMA.field("head_sha256").type
    assert table.to_pylist()[0]["kind"] == "image" and table.to_pylist()[0]["head_sha256"] is None
