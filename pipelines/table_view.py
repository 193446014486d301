"""Rows for people and for scripts: a rich table that fits the terminal, fix commands on lines of their own, or JSON.

`status` and `query` print what the index holds. At 80 columns a table that gives every column the same chance cuts
headers to `conne…` and dates to `2026-…`, and a fix command wrapped inside a cell cannot be pasted. So here every
column keeps at least its header's width, dates and numbers never wrap, and only free text (locations, keys,
messages) wraps, at spaces or, for a long key, anywhere. Fix commands (the `remediation` column) leave the table and
print below it, one per line, unbroken, with the row they belong to. `--json` prints the same rows as JSON: the raw
values, exact timestamps with their offset, no formatting.

Every cell is data from the index (bucket keys chosen by strangers) and passes through `printable` before a terminal
sees it, as a `Text`, so `[red]` in a key is shown, not obeyed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from pipelines.figures import count, moment, plural
from pipelines.terminal import LazyConsole, printable

#: Columns that hold a command to run: printed whole on lines of their own, never inside a table cell.
FIX_COLUMNS = frozenset({"remediation", "fix"})


def compact_table(*, title: str | None = None) -> Table:
    """A table with one space between columns and a rule under the headers: borders and padding cost a 9-column
    table 28 of 80 characters, which is what cut the headers."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=0, pad_edge=False, show_edge=False)


def add_text_column(table: Table, header: str, *, wraps: bool = True, width: int | None = None) -> None:
    """A column whose header is never cut: it may wrap (at spaces, long words folded) when `wraps`, else it never
    wraps and keeps its whole width. `width` fixes it (rich shrinks the widest wrapping columns first, whatever
    their minimum, so a key worth keeping whole gets a width, not a minimum)."""
    table.add_column(header, min_width=len(header), width=width, no_wrap=not wraps, overflow="fold")


def add_figure_column(table: Table, header: str) -> None:
    """A column of numbers or dates: right-aligned, never wrapped, never elided."""
    table.add_column(header, min_width=len(header), no_wrap=True, justify="right", overflow="fold")


def cell(value: Any) -> str:
    """A value of any DuckDB type as a table shows it: counts with separators, times to the second, NULL as such."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float | Decimal):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, datetime):  # local time to the second: `--json` has the exact time and its offset
        return (value.astimezone() if value.tzinfo else value).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


#: A text column (a key, typically) of up to this many characters is kept whole, on one line, while the other text
#: columns still get their floor (their header, or their longest value up to FLOOR), where they wrap at spaces.
WHOLE_UP_TO = 40
FLOOR = 20


def _kept_whole(longest: dict[int, int], headers: dict[int, int], budget: int) -> dict[int, int | None]:
    """The fixed width of each text column kept whole (None: it wraps in what is left), narrowest first, as long as
    the others keep their floor within `budget` characters."""
    floors = {i: max(headers[i], min(longest[i], FLOOR)) for i in longest}
    widths: dict[int, int | None] = dict.fromkeys(longest)
    for i in sorted(longest, key=longest.__getitem__):
        wanted = max(headers[i], longest[i])
        if wanted > WHOLE_UP_TO:
            break
        others = sum(floors[j] for j in longest if j != i and widths[j] is None)
        if sum(w for w in widths.values() if w) + wanted + others <= budget:
            widths[i] = wanted
    return widths


def _is_figure(values: Sequence[Any]) -> bool:
    """Whether a result column holds numbers or dates only (NULLs aside), which must not wrap."""
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, int | float | Decimal | datetime | date) and not isinstance(v, bool) for v in present
    )


def jsonable(value: Any) -> Any:
    """JSON for what json.dumps does not know: timestamps in ISO 8601 with their offset, decimals and the rest as
    text. Keys and strings keep `ensure_ascii`, which escapes the control characters a terminal would obey."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def as_json(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one JSON array of objects, one per row, keyed by column name."""
    return json.dumps(list(rows), indent=2, default=jsonable) + "\n"


def print_rows(console: LazyConsole, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Any result (a `query`'s) as a table, and its fix commands below it, each on one line with its row number."""
    fixes = [i for i, name in enumerate(columns) if name.lower() in FIX_COLUMNS]
    shown = [i for i in range(len(columns)) if i not in fixes]
    headers = {i: printable(columns[i]) for i in shown}
    texts = {i: [printable(cell(row[i])) for row in rows] for i in shown}
    figures = {i for i in shown if _is_figure([row[i] for row in rows])}
    wrapping = {i: max((len(t) for t in texts[i]), default=0) for i in shown if i not in figures}
    fixed = sum(max(len(headers[i]), *(len(t) for t in texts[i])) for i in figures)
    row_numbers = max(len("row"), len(str(len(rows)))) + 1 if fixes else 0
    budget = console.width - fixed - row_numbers - (len(shown) - 1)
    if sum(len(headers[i]) for i in wrapping) > budget:
        # Too many columns for the terminal even at their headers' width: one record per row, one line per column.
        _print_records(console, columns, rows, [texts[i] for i in shown], shown, fixes)
        return
    whole = _kept_whole(wrapping, {i: len(headers[i]) for i in wrapping}, budget)
    table = compact_table()
    if fixes:
        add_figure_column(table, "row")
    for i in shown:
        if i in figures:
            add_figure_column(table, headers[i])
        else:
            add_text_column(table, headers[i], width=whole[i])
    for number in range(1, len(rows) + 1):
        table.add_row(*([Text(str(number))] if fixes else []), *(Text(texts[i][number - 1]) for i in shown))
    console.print(table)
    console.print(f"({plural(len(rows), 'row')})", highlight=False, markup=False)
    for number, row in enumerate(rows, start=1):
        _print_fixes(console, columns, row, fixes, f"row {number} ")


def _print_fixes(
    console: LazyConsole, columns: Sequence[str], row: Sequence[Any], fixes: list[int], label: str
) -> None:
    """Each fix command of a row on a line of its own, never wrapped (soft wrap), after its label: copied whole."""
    for i in fixes:
        if row[i]:
            console.print(f"{label}{printable(columns[i])}:", highlight=False, markup=False)
            console.print(f"  {printable(str(row[i]))}", highlight=False, markup=False, soft_wrap=True)


def _print_records(
    console: LazyConsole,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    texts: list[list[str]],
    shown: list[int],
    fixes: list[int],
) -> None:
    """A result wider than the terminal, one record per row (as psql's expanded display): each column's name, never
    cut, beside its value, which wraps."""
    for number, row in enumerate(rows, start=1):
        record = Table(box=None, padding=(0, 1, 0, 0), show_header=False, title=f"row {number}", title_justify="left")
        record.add_column(no_wrap=True, style="bold")
        record.add_column(overflow="fold")
        for position, i in enumerate(shown):
            record.add_row(Text(printable(columns[i])), Text(texts[position][number - 1]))
        console.print(record)
        _print_fixes(console, columns, row, fixes, "")
    console.print(f"({plural(len(rows), 'row')})", highlight=False, markup=False)


#: How each provider's location reads as one address.
_SCHEMES = {"s3": "s3://", "gcs": "gs://", "azure": "az://"}


def address(provider: str, location: str, prefix: str) -> str:
    """A connection's bucket and prefix as one address a person recognises: `s3://photos/raw/`, or a local folder."""
    if provider in _SCHEMES:
        return f"{_SCHEMES[provider]}{location}/{prefix}"
    return f"{location.rstrip('/')}/{prefix}" if prefix else location


def status_table(rows: Sequence[dict[str, Any]], *, now: datetime | None = None) -> Table:
    """`bucket-sync status` as a table that fits 80 columns: each connection's name with its address on the line
    below (the one column that wraps, so a long path folds there), then dates and counts that never wrap."""
    table = compact_table()
    add_text_column(table, "connection")
    add_text_column(table, "profile", wraps=False)
    add_figure_column(table, "last sync")
    for header in ("objects", "accepted", "deleted", "violations"):
        add_figure_column(table, header)
    for r in rows:
        # Text cells: a str cell would be parsed as rich markup, and the index's values are data, not styling.
        where = Text(printable(r["name"] + (" (detached)" if r["detached"] else "")))
        where.append("\n" + printable(address(r["provider"], r["location"], r.get("prefix") or "")), style="dim")
        figures = [moment(r["last_synced"], now=now), *(count(r[k]) for k in ("objects", "accepted", "deleted"))]
        figures.append(count(r["violations"]))
        table.add_row(where, Text(printable(r["profile"])), *(Text(value) for value in figures))
    return table
