"""The DuckDB index: the open tables a data team queries.

Column names of `media` and `violations` are a published interface (DESIGN.md): add columns, never rename them.
Every write is one short transaction, and every writer shares the Dagster pool `duckdb_index` (limit 1); the lock
retry below covers a second process that opens the file anyway (the CLI's `status`, a notebook).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

from resources.state import default_home

SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    name          VARCHAR PRIMARY KEY,
    provider      VARCHAR NOT NULL,
    location      VARCHAR NOT NULL,   -- bucket, container or folder: never a credential
    prefix        VARCHAR NOT NULL,
    profile       VARCHAR NOT NULL,
    detached      BOOLEAN NOT NULL DEFAULT false,  -- removed from the catalog; its rows are kept
    first_synced  TIMESTAMPTZ,
    last_synced   TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    connection    VARCHAR NOT NULL,
    key           VARCHAR NOT NULL,
    size          BIGINT NOT NULL,
    etag          VARCHAR,
    last_modified TIMESTAMPTZ,
    version       VARCHAR,
    content_md5   VARCHAR,
    first_seen    TIMESTAMPTZ NOT NULL,
    last_seen     TIMESTAMPTZ NOT NULL,
    deleted       BOOLEAN NOT NULL DEFAULT false,
    deleted_at    TIMESTAMPTZ,
    moved_to      VARCHAR,
    moved_from    VARCHAR,
    accepted      BOOLEAN,
    PRIMARY KEY (connection, key)
);
CREATE TABLE IF NOT EXISTS media (
    connection        VARCHAR NOT NULL,
    key               VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,
    format            VARCHAR,
    width             INTEGER,
    height            INTEGER,
    orientation       INTEGER,
    display_width     INTEGER,
    display_height    INTEGER,
    major_brand       VARCHAR,
    compatible_brands VARCHAR[],
    codec             VARCHAR,
    pix_fmt           VARCHAR,
    duration_s        DOUBLE,
    frames            BIGINT,
    rotation          INTEGER,
    bytes_read        BIGINT,
    requests          INTEGER,
    error             VARCHAR,
    mode              VARCHAR,
    head_sha256       VARCHAR,
    etag              VARCHAR,
    probed_at         TIMESTAMPTZ,
    PRIMARY KEY (connection, key)
);
CREATE TABLE IF NOT EXISTS violations (
    connection  VARCHAR NOT NULL,
    key         VARCHAR NOT NULL,
    rule        VARCHAR NOT NULL,
    severity    VARCHAR NOT NULL,
    message     VARCHAR NOT NULL,
    remediation VARCHAR NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS syncs (
    connection   VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL,
    full_resync  BOOLEAN NOT NULL,
    listed       BIGINT NOT NULL,
    new          BIGINT NOT NULL,
    changed      BIGINT NOT NULL,
    unchanged    BIGINT NOT NULL,
    deleted      BIGINT NOT NULL,
    moved        BIGINT NOT NULL,
    probed       BIGINT NOT NULL,
    carried      BIGINT NOT NULL,
    accepted     BIGINT NOT NULL,
    violations   BIGINT NOT NULL,
    bytes_stored BIGINT NOT NULL,
    bytes_read   BIGINT NOT NULL,
    requests     BIGINT NOT NULL
);
"""

MEDIA_COLUMNS = (
    "kind, format, width, height, orientation, display_width, display_height, major_brand, compatible_brands, "
    "codec, pix_fmt, duration_s, frames, rotation, bytes_read, requests, error, mode, head_sha256, etag, probed_at"
)


@dataclass(frozen=True)
class SyncCounts:
    """One `syncs` row: what a sync saw and did."""

    connection: str
    run_id: str
    started_at: datetime
    full_resync: bool
    listed: int
    new: int
    changed: int
    unchanged: int
    deleted: int
    moved: int
    probed: int
    carried: int
    accepted: int
    violations: int
    bytes_stored: int
    bytes_read: int
    requests: int


@dataclass(frozen=True)
class SyncSnapshot:
    """The Parquet files one sync folds into the index (see resources/storage.py for where they live)."""

    changes: Path
    probes: Path
    moves: Path
    violations: Path


_MEDIA_SELECT = ", ".join("p." + c.strip() for c in MEDIA_COLUMNS.split(","))

#: The statements of one sync's transaction, in order. Paths and names travel as parameters, never as SQL text.
_APPLY_SYNC = (
    """
    INSERT INTO objects (connection, key, size, etag, last_modified, version, content_md5,
                         first_seen, last_seen, deleted, deleted_at, moved_to, moved_from, accepted)
    SELECT $name, c.key, c.size, c.etag, c.last_modified, c.version, c.content_md5,
           now(), now(), false, NULL, NULL, c.moved_from, p.accepted
    FROM read_parquet($changes) c LEFT JOIN read_parquet($probes) p USING (key)
    WHERE c.change <> 'deleted'
    ON CONFLICT (connection, key) DO UPDATE SET
        size = excluded.size, etag = excluded.etag, last_modified = excluded.last_modified,
        version = excluded.version, content_md5 = excluded.content_md5,
        last_seen = excluded.last_seen, deleted = false, deleted_at = NULL, moved_to = NULL,
        moved_from = coalesce(excluded.moved_from, objects.moved_from),
        accepted = excluded.accepted
    """,
    """
    UPDATE objects SET deleted = true, deleted_at = now(), moved_to = c.moved_to, accepted = false
    FROM read_parquet($changes) c
    WHERE objects.connection = $name AND objects.key = c.key AND c.change = 'deleted' AND NOT objects.deleted
    """,
    # Moves recognised by content after probing (providers without a content hash).
    """
    UPDATE objects SET moved_to = m.new_key FROM read_parquet($moves) m
    WHERE objects.connection = $name AND objects.key = m.old_key
    """,
    """
    UPDATE objects SET moved_from = m.old_key FROM read_parquet($moves) m
    WHERE objects.connection = $name AND objects.key = m.new_key
    """,
    f"""
    INSERT OR REPLACE INTO media (connection, key, {MEDIA_COLUMNS})
    SELECT $name, p.key, {_MEDIA_SELECT}
    FROM read_parquet($probes) p
    WHERE p.source <> 'carried'
       OR NOT EXISTS (SELECT 1 FROM media m WHERE m.connection = $name AND m.key = p.key
                      AND m.etag IS NOT DISTINCT FROM p.etag)
    """,
    "DELETE FROM violations WHERE connection = $name",
    """
    INSERT INTO violations
    SELECT $name, key, rule, severity, message, remediation, now()
    FROM read_parquet($violations) WHERE list_contains($rules, rule)
    """,
    "UPDATE connections SET last_synced = now(), first_synced = coalesce(first_synced, now()) WHERE name = $name",
)


def default_index_path() -> str:
    return str(Path(default_home()) / "index.duckdb")


class IndexUnavailable(Exception):
    """The index file cannot be opened; the message names the file and what a person should do about it."""


class IndexUnreadable(IndexUnavailable):
    """The file is not a DuckDB database DuckDB can read: truncated, overwritten or corrupt."""


class IndexLocked(IndexUnavailable):
    """Another process holds the file's write lock for longer than this reader was willing to wait."""


# Settings for SQL that a person types (`bucket-sync query`): with them a connection can read the index it opened and
# nothing else. No file or network access (so no COPY TO, read_text/read_csv of other files, ATTACH of another
# database, EXPORT), no installing or loading extensions (not even known ones, not even automatically), and the
# configuration locked so that the SQL cannot SET any of it back.
UNTRUSTED_SQL_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


class MediaIndex(ConfigurableResource):
    """The DuckDB index file, opened briefly per write so other readers get their turn."""

    path: str | None = Field(None, description="default $BUCKET_SYNC_HOME/index.duckdb")
    lock_timeout_s: float = 120.0

    @property
    def location(self) -> str:
        """Where the index is, for messages and metadata: never a credential."""
        return str(self.file)

    @property
    def file(self) -> Path:
        return Path(self.path or default_index_path()).resolve()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the index, waiting out another process's lock instead of failing the step.

        Raises IndexUnavailable (never a bare DuckDB error) when the file is corrupt or stays locked past
        `lock_timeout_s`, so every caller can tell a person which file is at fault and what to do.
        """
        path = self.file
        path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open(read_only=read_only and path.exists())
        try:
            if not read_only:
                con.execute(SCHEMA)
            yield con
        finally:
            con.close()

    @contextmanager
    def connect_untrusted(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the index read-only for SQL a person typed: it can read the index's tables and nothing else.

        Read-only alone still lets SQL write any file (`COPY ... TO`), read any file (`read_text`), ATTACH other
        databases and fetch extensions from the network; UNTRUSTED_SQL_CONFIG takes those away for this connection.
        """
        path = self.file
        if not path.exists():
            raise IndexUnavailable(f"no index at {path} yet: run `bucket-sync sync NAME` first")
        con = self._open(read_only=True, config=UNTRUSTED_SQL_CONFIG)
        try:
            yield con
        finally:
            con.close()

    def _open(
        self, *, read_only: bool, config: dict[str, str | bool | int | float | list[str]] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """duckdb.connect, retrying while another process holds the lock, with failures turned into advice."""
        path = self.file
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                return duckdb.connect(str(path), read_only=read_only, config=config or {})
            except duckdb.ConnectionException:
                raise  # this process misused DuckDB (e.g. two configurations at once): a bug, not the file's fault
            except duckdb.Error as exc:
                detail = str(exc)
                if "permission denied" in detail.lower():
                    raise IndexUnavailable(
                        f"the index at {path} cannot be opened ({detail}); give this user read and write access "
                        "to it and to its folder"
                    ) from exc
                if "could not set lock" not in detail.lower():
                    raise IndexUnreadable(
                        f"the index at {path} is not a readable DuckDB file ({detail}); move it aside and run "
                        "`bucket-sync sync NAME --full` for each connection to rebuild it"
                    ) from exc
                if time.monotonic() > deadline:
                    holder = _LOCK_HOLDER.search(detail)
                    who = f"{holder['program']}, PID {holder['pid']}" if holder else "another process"
                    raise IndexLocked(
                        f"the index at {path} is locked by another process ({who}), most likely a sync writing "
                        f"it; waited {self.lock_timeout_s:g}s; retry when that sync finishes"
                    ) from exc
                time.sleep(0.2)

    def record_connection(self, con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
        con.execute(
            """
            INSERT INTO connections (name, provider, location, prefix, profile, detached, updated_at)
            VALUES ($name, $provider, $location, $prefix, $profile, false, now())
            ON CONFLICT (name) DO UPDATE SET provider = excluded.provider, location = excluded.location,
                prefix = excluded.prefix, profile = excluded.profile, detached = false, updated_at = now()
            """,
            row,
        )

    def apply_sync(
        self,
        connection_row: dict[str, Any],
        snapshot: SyncSnapshot,
        rules: tuple[str, ...],
        counts: SyncCounts,
        attached: list[str] | None = None,
    ) -> dict[str, int]:
        """Fold one sync into the index in a single transaction: objects, tombstones, moves, facts, violations and
        history. Either all of it is visible afterwards or none of it is.

        Nothing is ever removed from `objects` or `media`: a vanished key is marked deleted (and moved, when its
        content reappeared under another key), and its facts stay queryable. The connection's violations are swapped
        for the sync's in the same transaction, so a reader never sees one sync's violations beside another sync's
        objects. `attached` (the catalog's connection names) flags every other connection as detached in the same
        transaction: the index's only writer is a sync, which holds the `duckdb_index` pool. Returns the violation
        count per rule now in the index.
        """
        params = {
            "name": counts.connection,
            "changes": str(snapshot.changes),
            "probes": str(snapshot.probes),
            "moves": str(snapshot.moves),
            "violations": str(snapshot.violations),
            "rules": list(rules),
        }
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                self.record_connection(con, connection_row)
                if attached is not None:
                    con.execute(
                        "UPDATE connections SET detached = NOT list_contains($names, name) "
                        "WHERE detached = list_contains($names, name)",
                        {"names": attached},
                    )
                for statement in _APPLY_SYNC:
                    con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
                con.execute(
                    """
                    INSERT INTO syncs VALUES ($connection, $run_id, $started_at, now(), $full_resync, $listed, $new,
                        $changed, $unchanged, $deleted, $moved, $probed, $carried, $accepted, $violations,
                        $bytes_stored, $bytes_read, $requests)
                    """,
                    counts.__dict__,
                )
                by_rule = con.execute(
                    "SELECT rule, count(*) FROM violations WHERE connection = $name GROUP BY rule",
                    {"name": counts.connection},
                ).fetchall()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return {rule: int(n) for rule, n in by_rule}

    def committed(self, connection: str, run_id: str) -> bool:
        """Whether run `run_id` folded its sync of `connection` into the index (its `syncs` row exists)."""
        if not self.file.exists():
            return False
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT count(*) FROM syncs WHERE connection = $c AND run_id = $r", {"c": connection, "r": run_id}
            ).fetchone()
        return bool(row and row[0])
