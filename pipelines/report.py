"""`bucket-sync report NAME`, and the report each sync links from its metadata: data from the index, one HTML page.

The data comes from where it is true for every machine: the index (the last syncs, each rule's count after each of
them in `sync_violations`, and the current `violations` with their objects' facts) and the state store (the EXIF
thumbnails probing kept, `SnapshotKeys.thumbnails`). The page goes back into the state store under
`SnapshotKeys.report`, so the link in the sync's metadata works wherever the store is readable. Rendering is
media/report_page.py; nothing here imports Dagster beyond what the state store brings.

Objects without an embedded thumbnail get one only when asked (`--fetch-thumbnails`): a ranged read of that object
alone, capped at `max_bytes`, decoded at reduced size. A sync never does it: it reads only what probing needs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media.report_page import Offender, ReportData, SyncPoint, render
from media.thumbnail import oriented

if TYPE_CHECKING:
    from resources.index import IndexAccess
    from resources.state import StateStore

#: Syncs shown in the chart, newest last.
HISTORY = 20
#: Default cap of a thumbnail read with --fetch-thumbnails: the head of a JPEG decodes to its top rows at least.
DEFAULT_MAX_BYTES = 2 * 1024 * 1024
#: Formats Pillow decodes from a (possibly cut-short) head read for a thumbnail.
DECODABLE = frozenset({"jpeg", "png", "gif", "bmp", "tiff", "webp"})

#: Reads bytes [0, length) of a key, checked against its etag: the bucket's ranged read.
Fetch = Callable[[str, int, "str | None"], bytes]


@dataclass(frozen=True)
class WrittenReport:
    """Where the report went: its state-store key and location, and the local file when the store is a folder."""

    key: str
    location: str
    local_path: Path | None
    violations: int
    thumbnails: int


def report_data(
    connection: str,
    index: IndexAccess,
    store: StateStore,
    *,
    fetch: Fetch | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    history: int = HISTORY,
) -> ReportData:
    """Everything the page shows, gathered from the index and the state store; LookupError before any sync."""
    with index.connect(read_only=True) as con:
        profile = con.execute("SELECT profile FROM connections WHERE name = $c", {"c": connection}).fetchone()
        syncs = _rows(
            con,
            "SELECT run_id, finished_at, listed, accepted, violations, probed, bytes_read, bytes_stored FROM syncs "
            "WHERE connection = $c ORDER BY finished_at DESC LIMIT $n",
            {"c": connection, "n": history},
        )[::-1]
        if profile is None or not syncs:
            raise LookupError(f"connection '{connection}' has not completed a sync yet: run `bucket-sync sync`")
        counts = _rows(
            con,
            "SELECT run_id, rule, violations FROM sync_violations "
            "WHERE connection = $c AND list_contains($runs, run_id)",
            {"c": connection, "runs": [s["run_id"] for s in syncs]},
        )
        violations = _rows(
            con,
            """
            SELECT v.key, v.rule, v.severity, v.message, v.remediation, m.kind, m.format, m.width, m.height,
                   m.orientation, o.size, o.etag
            FROM violations v
            LEFT JOIN media m ON m.connection = v.connection AND m.key = v.key
            LEFT JOIN objects o ON o.connection = v.connection AND o.key = v.key
            WHERE v.connection = $c ORDER BY v.rule, v.key
            """,
            {"c": connection},
        )
    by_run: dict[str, dict[str, int]] = {}
    for row in counts:
        by_run.setdefault(row["run_id"], {})[row["rule"]] = int(row["violations"])
    # Minutes label the syncs of a schedule; syncs minutes apart (a person fixing files) need their seconds.
    labels = [s["finished_at"].strftime("%m-%d %H:%M") for s in syncs]
    if len(set(labels)) < len(labels):
        labels = [s["finished_at"].strftime("%m-%d %H:%M:%S") for s in syncs]
    points = [SyncPoint(label, by_run.get(s["run_id"], {})) for label, s in zip(labels, syncs, strict=True)]
    thumbnails = _thumbnails(connection, store, violations, fetch, max_bytes)
    offenders = [
        Offender(
            key=v["key"],
            rule=v["rule"],
            severity=v["severity"],
            message=v["message"],
            remediation=v["remediation"],
            detail=_detail(v),
            thumbnail=thumbnails.get(v["key"]),
        )
        for v in violations
    ]
    last = syncs[-1]
    figures = {
        "objects": f"{last['listed']:,}",
        "accepted": f"{last['accepted']:,}",
        "violations": f"{len(violations):,}",
        "probed last sync": f"{last['probed']:,}",
        "bytes read last sync": _bytes(int(last["bytes_read"])),
    }
    return ReportData(
        connection=connection,
        profile=profile[0],
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        syncs=points,
        offenders=offenders,
        figures=figures,
    )


def write_report(
    connection: str,
    index: IndexAccess,
    store: StateStore,
    *,
    fetch: Fetch | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    out: Path | None = None,
) -> WrittenReport:
    """Render the report and put it in the state store (and at `out`, when given)."""
    from assets.snapshots import SnapshotKeys

    data = report_data(connection, index, store, fetch=fetch, max_bytes=max_bytes)
    page = render(data).encode()
    key = SnapshotKeys(connection).report
    store.write_bytes(key, page)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(page)
    root = store.local_root
    return WrittenReport(
        key=key,
        location=f"{store.location}/{key}",
        local_path=root / key if root is not None else None,
        violations=len(data.offenders),
        thumbnails=sum(o.thumbnail is not None for o in data.offenders),
    )


def _rows(con: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _thumbnails(
    connection: str, store: StateStore, violations: list[dict[str, Any]], fetch: Fetch | None, max_bytes: int
) -> dict[str, bytes]:
    """key -> a small JPEG turned by its orientation: the embedded thumbnail, else (with `fetch`) a capped read."""
    from assets.snapshots import SnapshotKeys
    from assets.thumbnails import read_thumbnails

    with tempfile.TemporaryDirectory(prefix="bucket-sync-report-") as folder:
        path = Path(folder) / "thumbnails.parquet"
        embedded = read_thumbnails(path) if store.fetch(SnapshotKeys(connection).thumbnails, path) else {}
    shown: dict[str, bytes] = {}
    for v in violations:
        key = v["key"]
        if key in shown:
            continue
        raw = embedded.get(key)
        if raw is None and fetch is not None and v["kind"] == "image" and v["format"] in DECODABLE and v["size"]:
            try:
                raw = fetch(key, min(int(v["size"]), max_bytes), v["etag"])
            except Exception:  # gone, changed or unreachable: the row stays, without a picture
                raw = None
        small = oriented(raw, v["orientation"]) if raw else None
        if small is not None:
            shown[key] = small
    return shown


def _detail(v: dict[str, Any]) -> str:
    parts = [v["format"] or v["kind"] or ""]
    if v["width"] and v["height"]:
        parts.append(f"{v['width']}x{v['height']}")
    if v["orientation"] not in (None, 1):
        parts.append(f"EXIF orientation {v['orientation']}")
    if v["size"] is not None:
        parts.append(_bytes(int(v["size"])))
    return " · ".join(p for p in parts if p)


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"
