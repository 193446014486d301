"""Numbers and dates as a person reads them: `1,234`, `12.3 MB`, `1 folder marker`, `Nov 30 17:43`.

The summary after a sync, `status` and `query` print figures that people compare at a glance; `21101071` bytes or a
timestamp with microseconds and a time zone makes them count digits. `--json` prints the raw values instead, for
scripts. Byte sizes use decimal units (1 kB = 1,000 bytes), as rich and the storage providers' billing do.
"""

from __future__ import annotations

from datetime import datetime

from rich.filesize import decimal


def count(n: int) -> str:
    """A count with thousands separators: 1234567 -> `1,234,567`."""
    return f"{n:,}"


def size(n: int) -> str:
    """A byte size in decimal units with one decimal: 12345678 -> `12.3 MB`; below 1 kB, `999 bytes`, `1 byte`."""
    return decimal(n)


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """`1 folder marker`, `2 folder markers`, `1,204 objects`: the count, formatted, with the noun it agrees with."""
    noun = singular if n == 1 else (plural_form or singular + "s")
    return f"{count(n)} {noun}"


def moment(at: datetime | None, *, now: datetime | None = None) -> str:
    """A timestamp short enough for a table cell and never cut: `Nov 30 17:43` this year, `2025-11-30` before.

    The local time of the machine reading it, to the minute: a person reads `last sync` to see whether it was today,
    not to the microsecond; `--json` keeps the exact time with its offset.
    """
    if at is None:
        return "never"
    local = at.astimezone() if at.tzinfo else at
    current = now or datetime.now(local.tzinfo)
    return local.strftime("%b %d %H:%M") if local.year == current.year else local.strftime("%Y-%m-%d")
