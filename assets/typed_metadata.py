"""Metadata values that the Dagster UI can draw: tables with a schema, and numbers it plots across materializations.

A markdown table is text to the UI: it cannot sort it, and a number inside it is never plotted. A `TableMetadataValue`
with a `TableSchema` renders as a real table on the asset page and on a check's own result, and every int or float
value becomes a point of a plot over the partition's materializations. Built here once so every asset and check
words its tables and rounds its figures the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

#: Significant digits kept for a plotted float: `21101.071428571428` tells a person nothing its first digits do not.
FLOAT_DIGITS = 1


def table(columns: Sequence[tuple[str, str, str]], rows: Iterable[Sequence[Any]]) -> MetadataValue:
    """A table with a schema: `columns` are (name, type, description), `rows` the values in that order.

    Types are Dagster's table column types (`string`, `int`, `float`, `bool`). None stays empty in the UI.
    """
    schema = TableSchema(columns=[TableColumn(name, kind, description) for name, kind, description in columns])
    names = [name for name, _, _ in columns]
    records = [TableRecord({n: v for n, v in zip(names, row, strict=True) if v is not None}) for row in rows]
    return MetadataValue.table(records=records, schema=schema)


def counts_table(label: str, counts: Mapping[str, int]) -> MetadataValue:
    """A two-column table of named counts (extensions, rules), largest first: sortable where a JSON blob is not."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return table([(label, "string", ""), ("count", "int", "")], ordered)


def rounded(value: float, digits: int = FLOAT_DIGITS) -> MetadataValue:
    """A float rounded for people (and plotted by Dagster): rates, averages, shares."""
    return MetadataValue.float(round(float(value), digits))
