"""What a person reads after a sync, and in `bucket-sync status`: straight from the index, the source of truth.

`status` imports this module without Dagster (see pipelines/cli.py): the state store and the snapshot keys, which
come with Dagster, are imported by the summary after a sync only, when Dagster is loaded already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resources.index import IndexAccess

if TYPE_CHECKING:
    from resources.state import StateStore

EXAMPLE_QUERY = "SELECT rule, key, message FROM violations WHERE connection = '{name}' ORDER BY rule, key"


@dataclass(frozen=True)
class SyncSummary:
    connection: str
    last_sync: dict[str, Any]
    violations_by_rule: dict[str, int]
    folder_markers: int
    manifest: str
    manifest_images: int
    index: str

    def render(self) -> str:
        s = self.last_sync
        stored, read = s["bytes_stored"], s["bytes_read"]
        share = f"{100.0 * read / stored:.2f}%" if stored else "n/a"
        # An index written before sync kinds were recorded has null there: those syncs were all full.
        if s.get("sync_kind") == "delta":
            kind = f"delta, {s.get('event_keys') or 0} event key(s) read by HEAD; the bucket was not listed"
        else:
            kind = "full (the bucket was listed)"
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(self.violations_by_rule.items())) or "none"
        seconds = (s["finished_at"] - s["started_at"]).total_seconds()
        return "\n".join(
            [
                f"Synced '{self.connection}' in {seconds:.1f}s",
                f"  objects listed : {s['listed']}  ({s['new']} new, {s['changed']} changed, {s['unchanged']} "
                f"unchanged, {s['deleted']} deleted, {s['moved']} moved; {self.folder_markers} folder markers "
                "skipped)",
                f"  sync           : {kind}",
                f"  probed         : {s['probed']} read, {s['carried']} facts reused",
                f"  accepted       : {s['accepted']} of {s['listed']}",
                f"  violations     : {rules}",
                f"  bytes read     : {read:,} of {stored:,} stored ({share}) in {s['requests']} requests",
                f"  manifest       : {self.manifest}  ({self.manifest_images} images)",
                f"  index          : {self.index}",
                '  try            : bucket-sync query "' + EXAMPLE_QUERY.format(name=self.connection) + '"',
            ]
        )


def sync_summary(connection: str, index: IndexAccess, store: StateStore, folder_markers: int = 0) -> SyncSummary:
    from assets.snapshots import SnapshotKeys

    with index.connect(read_only=True) as con:
        cursor = con.execute(
            "SELECT * FROM syncs WHERE connection = $c ORDER BY finished_at DESC LIMIT 1", {"c": connection}
        )
        columns = [d[0] for d in cursor.description]
        row = cursor.fetchone()
        if row is None:
            raise LookupError(f"connection '{connection}' has not completed a sync yet")
        # The manifest lists exactly the accepted images the index holds: count them there, not by reading it.
        images = con.execute(
            "SELECT count(*) FROM objects o JOIN media m USING (connection, key) "
            "WHERE o.connection = $c AND NOT o.deleted AND o.accepted AND m.kind = 'image'",
            {"c": connection},
        ).fetchall()[0][0]
        rules = dict(
            con.execute(
                "SELECT rule, count(*) FROM violations WHERE connection = $c GROUP BY rule", {"c": connection}
            ).fetchall()
        )
    manifest = f"{store.location}/{SnapshotKeys(connection).manifest}"
    return SyncSummary(
        connection=connection,
        last_sync=dict(zip(columns, row, strict=True)),
        violations_by_rule={k: int(v) for k, v in rules.items()},
        folder_markers=folder_markers,
        manifest=manifest,
        manifest_images=images,
        index=index.location,
    )


STATUS_QUERY = """
SELECT c.name, c.provider, c.location, c.profile, c.detached, c.last_synced,
       (SELECT count(*) FROM objects o WHERE o.connection = c.name AND NOT o.deleted) AS objects,
       (SELECT count(*) FROM objects o WHERE o.connection = c.name AND o.deleted) AS deleted,
       (SELECT count(*) FROM objects o WHERE o.connection = c.name AND NOT o.deleted AND o.accepted) AS accepted,
       (SELECT count(*) FROM violations v WHERE v.connection = c.name) AS violations
FROM connections c ORDER BY c.name
"""


def status_rows(index: IndexAccess) -> list[dict[str, Any]]:
    if not index.exists():
        return []
    with index.connect(read_only=True) as con:
        cursor = con.execute(STATUS_QUERY)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
