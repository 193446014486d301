"""The index's tables and their columns, as `bucket-sync tables` prints them: what a person can query.

They come from the DDL itself (resources/index.py), run in an in-memory DuckDB and read back from its catalog, so the
listing can never drift from the tables a sync creates, and it answers before any sync has made an index. DuckDB
spells each type as a query sees it (`TIMESTAMP WITH TIME ZONE`, `STRUCT(...)[]`), which is what a person writing SQL
needs. Nothing here imports Dagster or a cloud SDK: `tables` answers as fast as `--help`.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from resources.index import schema


@dataclass(frozen=True)
class IndexColumn:
    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class IndexTable:
    name: str
    columns: tuple[IndexColumn, ...]


def index_tables() -> list[IndexTable]:
    """Every table of the index's DDL in the order it creates them, each with its columns in order."""
    with duckdb.connect(":memory:") as con:
        con.execute(schema(keys=True))
        rows = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE NOT internal AND schema_name = 'main' ORDER BY table_oid, column_index"
        ).fetchall()
    tables: dict[str, list[IndexColumn]] = {}
    for table, column, kind, nullable in rows:
        tables.setdefault(table, []).append(IndexColumn(column, kind, bool(nullable)))
    return [IndexTable(name, tuple(columns)) for name, columns in tables.items()]
