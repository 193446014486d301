"""What a person reads after a sync, and in `bucket-sync status`: straight from the index, the source of truth.

`status` imports this module without Dagster (see pipelines/cli.py): the state store and the snapshot keys, which
come with Dagster, are imported by the summary after a sync only, when Dagster is loaded already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.figures import count, plural, size
from resources.index import IndexAccess

if TYPE_CHECKING:
    from resources.state import StateStore

EXAMPLE_QUERY = "SELECT rule, key, message, remediation FROM violations WHERE connection = '{name}' ORDER BY rule, key"


@dataclass(frozen=True)
class SyncSummary:
    connection: str
    last_sync: dict[str, Any]
    violations_by_rule: dict[str, int]
    folder_markers: int
    manifest: str
    manifest_images: int
    index: str
    manifest_videos: int = 0
    #: Listed objects left out by the connection's quota (max_objects / max_bytes), and their bytes.
    over_quota: int = 0
    over_quota_bytes: int = 0

    def render(self) -> str:
        s = self.last_sync
        stored, read = s["bytes_stored"], s["bytes_read"]
        share = f"{100.0 * read / stored:.2f}%" if stored else "n/a"
        # An index written before sync kinds were recorded has null there: those syncs were all full.
        if s.get("sync_kind") == "delta":
            kind = f"delta, {plural(s.get('event_keys') or 0, 'event key')} read by HEAD; the bucket was not listed"
        else:
            kind = "full (the bucket was listed)"
        rules = ", ".join(f"{rule} {count(n)}" for rule, n in sorted(self.violations_by_rule.items())) or "none"
        seconds = (s["finished_at"] - s["started_at"]).total_seconds()
        over_quota = (
            f"  over quota     : {count(self.over_quota)} skipped ({size(self.over_quota_bytes)}), not probed; raise "
            "max_objects / max_bytes to index them (the `quota` check has the details)"
            if self.over_quota
            else None
        )
        return "\n".join(
            line
            for line in [
                f"Synced '{self.connection}' in {seconds:.1f}s",
                f"  objects listed : {count(s['listed'])}  ({count(s['new'])} new, {count(s['changed'])} changed, "
                f"{count(s['unchanged'])} unchanged, {count(s['deleted'])} deleted, {count(s['moved'])} moved; "
                f"{plural(self.folder_markers, 'folder marker')} skipped)",
                f"  sync           : {kind}",
                f"  probed         : {count(s['probed'])} read, {count(s['carried'])} facts reused",
                f"  accepted       : {count(s['accepted'])} of {plural(s['listed'], 'object')}",
                over_quota,
                f"  violations     : {rules}",
                f"  bytes read     : {size(read)} of {size(stored)} stored ({share}) in "
                f"{plural(s['requests'], 'request')}",
                f"  manifest       : {self.manifest_holds()}",
                f"                   at {self.manifest}",
                f"  index          : {self.index}",
                "  try            : the violations and their fixes, with",
                # On a line of its own, whole: a person pastes it.
                '    bucket-sync query "' + EXAMPLE_QUERY.format(name=self.connection) + '"',
            ]
            if line is not None
        )

    def manifest_holds(self) -> str:
        """What the manifest holds, said so: it is CVAT's image manifest, so "accepted 6" beside "4 images" reads as
        a gap unless the summary says that accepted videos have manifests of their own."""
        held = f"{plural(self.manifest_images, 'image')} (image manifest"
        if self.manifest_videos:
            has = "has its own manifest" if self.manifest_videos == 1 else "have their own manifests"
            held += f"; {plural(self.manifest_videos, 'video')} {has}"
        return held + ")"


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
        images, videos = con.execute(
            "SELECT count(*) FILTER (WHERE m.kind = 'image'), count(*) FILTER (WHERE m.kind = 'video') "
            "FROM objects o JOIN media m USING (connection, key) "
            "WHERE o.connection = $c AND NOT o.deleted AND o.accepted",
            {"c": connection},
        ).fetchall()[0]
        rules = dict(
            con.execute(
                "SELECT rule, count(*) FROM violations WHERE connection = $c GROUP BY rule", {"c": connection}
            ).fetchall()
        )
        over_quota, over_quota_bytes = con.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM skipped WHERE connection = $c AND reason = 'quota'",
            {"c": connection},
        ).fetchall()[0]
    manifest = f"{store.location}/{SnapshotKeys(connection).manifest}"
    return SyncSummary(
        connection=connection,
        last_sync=dict(zip(columns, row, strict=True)),
        violations_by_rule={k: int(v) for k, v in rules.items()},
        folder_markers=folder_markers,
        manifest=manifest,
        manifest_images=int(images),
        manifest_videos=int(videos),
        index=index.location,
        over_quota=int(over_quota),
        over_quota_bytes=int(over_quota_bytes),
    )


STATUS_QUERY = """
SELECT c.name, c.provider, c.location, c.prefix, c.profile, c.detached, c.last_synced,
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
