"""The index: the open tables a data team queries, in one of two places, chosen by one setting (`MediaIndex.url`).

- A DuckDB file (the embedded default, `$BUCKET_SYNC_HOME/index.duckdb`): one writer at a time, so every writer
  shares the Dagster pool `duckdb_index` (limit 1); the lock retry below covers a second process that opens the file
  anyway (the CLI's `status`, a notebook).
- A DuckLake catalog whose metadata lives in Postgres (`ducklake:postgres:dbname=... host=...`) and whose data files
  live in the state store (`MediaIndex.data_path`, a folder or an `s3://` URL): runs on different machines commit
  concurrently, and a reader sees whole syncs only (each sync is one DuckLake snapshot).

Both serve the same tables, columns and SQL. DuckLake has no primary keys and no ON CONFLICT, so the writers' upserts
are MERGE statements, on both backends (the file keeps its primary keys as a guard). DuckLake detects two commits that
touch the same table as a conflict; a write transaction that loses is run again from the start (`_transaction`).
Credentials never travel in the URL: the Postgres password comes from $PGPASSWORD (or the variable named by
`password_env`), S3 credentials from the standard AWS_* variables, both handed to DuckDB as secrets, never as SQL text.
Extensions load by path from their installed wheels, never from the network.

Column names of `media` and `violations` are a published interface (DESIGN.md): add columns, never rename them.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from media.facts import FACT_COLUMNS, FACT_SCHEMA, ColumnType
from resources.home import default_home
from resources.secrets import ENV_NAME, has_url_userinfo, remember, scrub

INDEX_ENV = "BUCKET_SYNC_INDEX"
INDEX_DATA_ENV = "BUCKET_SYNC_INDEX_DATA"
DUCKLAKE_POSTGRES = "ducklake:postgres:"
#: The name under which a DuckLake index is attached; queries see its tables unqualified (USE).
LAKE_ALIAS = "bucket_sync_index"

_T = TypeVar("_T")

#: The tables, for both backends. `{key}` holds each table's primary key on a DuckDB file and nothing on DuckLake,
#: which has no primary keys; the writers never rely on one (they MERGE).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    name          VARCHAR NOT NULL,
    provider      VARCHAR NOT NULL,
    location      VARCHAR NOT NULL,   -- bucket, container or folder: never a credential
    prefix        VARCHAR NOT NULL,
    profile       VARCHAR NOT NULL,
    detached      BOOLEAN NOT NULL DEFAULT false,  -- removed from the catalog; its rows are kept
    first_synced  TIMESTAMPTZ,
    last_synced   TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL{key_name}
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
    accepted      BOOLEAN{key_connection_key}
);
CREATE TABLE IF NOT EXISTS media (
    connection        VARCHAR NOT NULL,
    key               VARCHAR NOT NULL,
{media_facts}
    etag              VARCHAR,
    probed_at         TIMESTAMPTZ{key_connection_key}
);
{media_migration}
CREATE TABLE IF NOT EXISTS violations (
    connection  VARCHAR NOT NULL,
    key         VARCHAR NOT NULL,
    rule        VARCHAR NOT NULL,
    severity    VARCHAR NOT NULL,
    message     VARCHAR NOT NULL,
    remediation VARCHAR NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    connection       VARCHAR NOT NULL,
    key              VARCHAR NOT NULL,
    size             BIGINT NOT NULL,
    etag             VARCHAR,
    last_modified    TIMESTAMPTZ,
    reason           VARCHAR NOT NULL,   -- 'quota': over the connection's max_objects / max_bytes
    first_skipped_at TIMESTAMPTZ NOT NULL{key_connection_key}
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
    requests     BIGINT NOT NULL,
    sync_kind    VARCHAR,             -- 'full' (the bucket was listed) or 'delta' (HEADs of event keys)
    event_keys   BIGINT               -- distinct keys a delta's events named; 0 for a full sync
);
-- The violations of each rule after each sync: the history the report charts (`violations` holds the current ones).
CREATE TABLE IF NOT EXISTS sync_violations (
    connection  VARCHAR NOT NULL,
    run_id      VARCHAR NOT NULL,
    rule        VARCHAR NOT NULL,
    violations  BIGINT NOT NULL
);
{syncs_migration}
"""

#: Columns `syncs` gained after its first release: an index written before them gains them (null for its old rows)
#: on the next write, as `media` gains new fact columns. A no-op when they exist, on both backends.
_SYNCS_MIGRATION = """
ALTER TABLE syncs ADD COLUMN IF NOT EXISTS sync_kind VARCHAR;
ALTER TABLE syncs ADD COLUMN IF NOT EXISTS event_keys BIGINT;
"""


#: The DuckDB type of each column type a fact can declare (media.facts.ColumnType).
SQL_TYPES: dict[ColumnType, str] = {
    "string": "VARCHAR",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string_list": "VARCHAR[]",
    "keyframe_list": "STRUCT(number BIGINT, pts BIGINT)[]",
}


def _media_facts_ddl() -> tuple[str, str]:
    """The `media` table's fact columns, derived from media.facts.FACT_SCHEMA, and the statements that add any of
    them an existing index lacks: an index written before a fact existed gains its column (null for the rows it
    has) on the next write, so a field added to MediaFacts needs no edit here. Adding a column that exists is a
    no-op on both backends (no DuckLake snapshot either)."""
    columns = "\n".join(
        f"    {c.name:<17} {SQL_TYPES[c.type]}{' NOT NULL' if c.required else ''}," for c in FACT_SCHEMA
    )
    migration = "\n".join(
        f"ALTER TABLE media ADD COLUMN IF NOT EXISTS {c.name} {SQL_TYPES[c.type]};" for c in FACT_SCHEMA
    )
    return columns, migration


def schema(*, keys: bool) -> str:
    """The DDL of the index: with primary keys for a DuckDB file, without for DuckLake. Same tables and columns."""
    media_facts, media_migration = _media_facts_ddl()
    return _SCHEMA.format(
        key_name=",\n    PRIMARY KEY (name)" if keys else "",
        key_connection_key=",\n    PRIMARY KEY (connection, key)" if keys else "",
        media_facts=media_facts,
        media_migration=media_migration,
        syncs_migration=_SYNCS_MIGRATION,
    )


SCHEMA = schema(keys=True)

#: The `media` columns a sync writes from the probes snapshot: every fact, then the object version they describe.
MEDIA_COLUMNS = ", ".join((*FACT_COLUMNS, "etag", "probed_at"))


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
    sync_kind: str = "full"
    event_keys: int = 0


@dataclass(frozen=True)
class SyncSnapshot:
    """The Parquet files one sync folds into the index (see resources/storage.py for where they live)."""

    changes: Path
    probes: Path
    moves: Path
    violations: Path
    #: Listed objects over the connection's quota (assets/quota.py); None: the listing recorded none.
    skipped: Path | None = None


_MEDIA_SELECT = ", ".join("p." + c.strip() for c in MEDIA_COLUMNS.split(","))

_MEDIA_SET = ", ".join(f"{c.strip()} = p.{c.strip()}" for c in MEDIA_COLUMNS.split(","))

#: The upsert of a connection's row: its description is replaced, its sync times are kept.
_RECORD_CONNECTION = """
    MERGE INTO connections USING (SELECT $name AS name) s ON connections.name = s.name
    WHEN MATCHED THEN UPDATE SET provider = $provider, location = $location, prefix = $prefix, profile = $profile,
        detached = false, updated_at = now()
    WHEN NOT MATCHED THEN INSERT (name, provider, location, prefix, profile, detached, updated_at)
        VALUES ($name, $provider, $location, $prefix, $profile, false, now())
"""

#: A listed object whose `objects` row already says what the listing says (same version, live, not moved away): a
#: sync only moves its last_seen and its verdict.
_CURRENT_ROW = """
    objects.connection = $name AND objects.key = c.key AND NOT objects.deleted AND objects.deleted_at IS NULL
    AND objects.moved_to IS NULL AND c.moved_from IS NULL AND objects.size = c.size
    AND objects.etag IS NOT DISTINCT FROM c.etag AND objects.last_modified IS NOT DISTINCT FROM c.last_modified
    AND objects.version IS NOT DISTINCT FROM c.version AND objects.content_md5 IS NOT DISTINCT FROM c.content_md5
"""
_LISTED = """
    (SELECT c.key, c.size, c.etag, c.last_modified, c.version, c.content_md5, c.moved_from, p.accepted
     FROM read_parquet($changes) c LEFT JOIN read_parquet($probes) p USING (key) WHERE c.change <> 'deleted') AS c
"""
_VIOLATION = "key, rule, severity, message, remediation"

#: The statements of one sync's transaction, in order. Paths and names travel as parameters, never as SQL text.
#: The upserts are MERGE (DuckLake has no primary keys, so no ON CONFLICT and no INSERT OR REPLACE); each keeps the
#: semantics of the ON CONFLICT it replaced: first_seen survives an update, moved_from is coalesced with the old one,
#: and carried facts whose etag did not change are not rewritten. Rows that stay as they were are not rewritten
#: either: an unchanged object gets its last_seen and verdict (one narrow UPDATE), not a whole-row MERGE, and a
#: violation found again keeps its row (and its detected_at, when it was first found), so an unchanged re-sync writes
#: what changed, plus last_seen.
_APPLY_SYNC = (
    f"""
    MERGE INTO objects
    USING (SELECT * FROM {_LISTED} WHERE NOT EXISTS (SELECT 1 FROM objects WHERE {_CURRENT_ROW})) AS c
    ON objects.connection = $name AND objects.key = c.key
    WHEN MATCHED THEN UPDATE SET
        size = c.size, etag = c.etag, last_modified = c.last_modified, version = c.version,
        content_md5 = c.content_md5, last_seen = now(), deleted = false, deleted_at = NULL, moved_to = NULL,
        moved_from = coalesce(c.moved_from, objects.moved_from), accepted = c.accepted
    WHEN NOT MATCHED THEN INSERT (connection, key, size, etag, last_modified, version, content_md5,
                                  first_seen, last_seen, deleted, deleted_at, moved_to, moved_from, accepted)
        VALUES ($name, c.key, c.size, c.etag, c.last_modified, c.version, c.content_md5,
                now(), now(), false, NULL, NULL, c.moved_from, c.accepted)
    """,
    f"UPDATE objects SET last_seen = now(), accepted = c.accepted FROM {_LISTED} WHERE {_CURRENT_ROW}",
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
    MERGE INTO media
    USING (SELECT * FROM read_parquet($probes) p
           WHERE p.source <> 'carried'
              OR NOT EXISTS (SELECT 1 FROM media m WHERE m.connection = $name AND m.key = p.key
                             AND m.etag IS NOT DISTINCT FROM p.etag)) AS p
    ON media.connection = $name AND media.key = p.key
    WHEN MATCHED THEN UPDATE SET {_MEDIA_SET}
    WHEN NOT MATCHED THEN INSERT (connection, key, {MEDIA_COLUMNS}) VALUES ($name, p.key, {_MEDIA_SELECT})
    """,
    f"""
    DELETE FROM violations WHERE connection = $name AND ({_VIOLATION}) NOT IN (
        SELECT ({_VIOLATION}) FROM read_parquet($violations) WHERE list_contains($rules, rule))
    """,
    f"""
    INSERT INTO violations
    SELECT $name, {_VIOLATION}, now() FROM (
        SELECT {_VIOLATION} FROM read_parquet($violations) WHERE list_contains($rules, rule)
        EXCEPT SELECT {_VIOLATION} FROM violations WHERE connection = $name)
    """,
    "UPDATE connections SET last_synced = now(), first_synced = coalesce(first_synced, now()) WHERE name = $name",
)

#: The connection's `skipped` rows become the sync's: keys no longer skipped (admitted, deleted, quota raised or
#: removed) leave, a key skipped again keeps its first_skipped_at, and only rows that changed are written.
_APPLY_SKIPPED = (
    """
    DELETE FROM skipped WHERE connection = $name AND reason = 'quota'
        AND key NOT IN (SELECT key FROM read_parquet($skipped))
    """,
    """
    UPDATE skipped SET size = s.size, etag = s.etag, last_modified = s.last_modified FROM read_parquet($skipped) s
    WHERE skipped.connection = $name AND skipped.key = s.key AND skipped.reason = 'quota'
      AND (skipped.size <> s.size OR skipped.etag IS DISTINCT FROM s.etag
           OR skipped.last_modified IS DISTINCT FROM s.last_modified)
    """,
    """
    INSERT INTO skipped
    SELECT $name, s.key, s.size, s.etag, s.last_modified, 'quota', now() FROM read_parquet($skipped) s
    WHERE NOT EXISTS (SELECT 1 FROM skipped k WHERE k.connection = $name AND k.key = s.key AND k.reason = 'quota')
    """,
)
_CLEAR_SKIPPED = "DELETE FROM skipped WHERE connection = $name AND reason = 'quota'"

#: This sync's violations whose (key, rule) the connection's rows in the index (the previous sync's) do not hold.
_NEW_VIOLATIONS = """
SELECT count(*) FROM (SELECT DISTINCT key, rule FROM read_parquet($violations) WHERE list_contains($rules, rule)) v
WHERE NOT EXISTS (SELECT 1 FROM violations o WHERE o.connection = $name AND o.key = v.key AND o.rule = v.rule)
"""


class SyncFolded(NamedTuple):
    """What folding a sync into the index found: the violations per rule now held, and how many are new."""

    by_rule: dict[str, int]
    new_violations: int


class IndexUnavailable(Exception):
    """The index cannot be opened; the message names it (never a credential) and what a person should do about it."""


class IndexUnreadable(IndexUnavailable):
    """The file is not a DuckDB database DuckDB can read: truncated, overwritten or corrupt."""


class IndexLocked(IndexUnavailable):
    """Another process holds the file's write lock for longer than this reader was willing to wait."""


class IndexMissing(IndexUnavailable):
    """No index has been written there yet (a DuckLake catalog database without the DuckLake tables)."""


class IndexSettingError(IndexUnavailable, ValueError):
    """`MediaIndex.url` / `data_path` (or their variables) say something the index cannot be, or hold a credential."""


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


def default_index_path() -> str:
    return str(Path(default_home()) / "index.duckdb")


def default_data_path() -> str:
    """Where a DuckLake index keeps its data files: $BUCKET_SYNC_INDEX_DATA, else `index-data/` in the state store."""
    explicit = os.environ.get(INDEX_DATA_ENV)
    if explicit:
        return explicit
    state = os.environ.get("BUCKET_SYNC_STATE") or default_home()
    if "://" in state:
        return state.rstrip("/") + "/index-data/"
    return str(Path(state) / "index-data")


#: `password=...` in a libpq key/value connection string, or `?password=` / `&password=` in a postgresql:// URI.
_CONNINFO_PASSWORD = re.compile(r"(?i)(?:^|\s|[?&])password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]*)")
#: `postgresql://user:password@host`: a password in a URI's user-info.
_URI_PASSWORD = re.compile(r"(?i)^postgres(?:ql)?://[^/@\s]*:([^/@\s]*)@")
_DATA_SCHEMES = ("s3://",)


@dataclass(frozen=True)
class IndexLocation:
    """Where the index is: a DuckDB file, or a DuckLake catalog (a Postgres connection string, no password) with the
    folder or URL of its data files. Nothing here is secret, so it may be logged and shown."""

    file: Path | None = None
    catalog: str | None = None
    data_path: str | None = None

    @property
    def lake(self) -> bool:
        return self.catalog is not None

    def describe(self) -> str:
        if self.file is not None:
            return str(self.file)
        return f"DuckLake {DUCKLAKE_POSTGRES}{self.catalog} (data in {self.data_path})"


def parse_index_url(url: str, data_path: str | None = None, *, setting: str = "MediaIndex.url") -> IndexLocation:
    """Read the index setting: a DuckDB file path, or `ducklake:postgres:<libpq connection string or URI>`.

    A password in it is refused (and remembered, so no later echo of it leaks): it would travel into every log line
    and error that names the index. `setting` names where the value came from, for the error.
    """
    text = url.strip()
    if not text:
        raise IndexSettingError(f"{setting} is empty: give a DuckDB file path or {DUCKLAKE_POSTGRES}<connection>")
    if text.startswith("ducklake:"):
        if not text.startswith(DUCKLAKE_POSTGRES):
            raise IndexSettingError(
                f"{setting}: a DuckLake index keeps its catalog in Postgres: write "
                f"{DUCKLAKE_POSTGRES}dbname=NAME host=HOST port=PORT user=USER"
            )
        conninfo = text[len(DUCKLAKE_POSTGRES) :].strip()
        if not conninfo:
            raise IndexSettingError(f"{setting}: {DUCKLAKE_POSTGRES} must be followed by a Postgres connection string")
        found = _CONNINFO_PASSWORD.search(conninfo) or _URI_PASSWORD.search(conninfo)
        if found:
            remember(found.group(1).strip("'"))
            remember(text)
            raise IndexSettingError(
                f"{setting} holds a Postgres password; a credential never goes in the index URL: remove it and "
                "export PGPASSWORD (or the variable named by MediaIndex.password_env) instead"
            )
        if has_url_userinfo(conninfo) and not conninfo.lower().startswith(("postgres://", "postgresql://")):
            remember(text)
            raise IndexSettingError(f"{setting} holds a URL with a user name or password before '@'; remove it")
        return IndexLocation(catalog=conninfo, data_path=_data_path(data_path))
    if has_url_userinfo(text):
        remember(text)
        raise IndexSettingError(f"{setting} holds a URL with a user name or password before '@'; remove it")
    if "://" in text:
        raise IndexSettingError(
            f"{setting}: a DuckDB file index is a local path; for an index on object storage use "
            f"{DUCKLAKE_POSTGRES}<connection> with MediaIndex.data_path (${INDEX_DATA_ENV}) set to an s3:// URL"
        )
    return IndexLocation(file=Path(text).expanduser().resolve())


def _data_path(configured: str | None) -> str:
    setting = "MediaIndex.data_path" if configured else f"${INDEX_DATA_ENV}"
    value = (configured or default_data_path()).strip()
    if has_url_userinfo(value):
        remember(value)
        raise IndexSettingError(
            f"{setting} holds a URL with credentials before '@'; remove them and export AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY instead"
        )
    if "://" in value:
        if not value.startswith(_DATA_SCHEMES):
            raise IndexSettingError(f"{setting}: the DuckLake data path is a local folder or an s3:// URL")
        return value.rstrip("/") + "/"
    return str(Path(value).expanduser().resolve()) + "/"


#: The extension wheels, by extension name: `<package>/extensions/v<duckdb version>/<name>.duckdb_extension`.
_EXTENSION_PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
}
#: Settings of every DuckLake session: no extension is ever fetched or loaded behind our back.
_OFFLINE_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def extension_path(name: str) -> Path:
    """The extension file that the installed wheel ships for this DuckDB release (see pyproject.toml's pin)."""
    package = _EXTENSION_PACKAGES[name]
    wheel = package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise IndexUnavailable(
            f"the DuckDB extension '{name}' is not installed: install {wheel}=={duckdb.__version__} (`make setup`)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
        if candidate.is_file():
            return candidate
    raise IndexUnavailable(
        f"{wheel} is installed but holds no '{name}' extension for DuckDB {duckdb.__version__}; install "
        f"{wheel}=={duckdb.__version__}, the release that matches the installed duckdb"
    )


def _attach_once_created(con: duckdb.DuckDBPyConnection, *, read_only: bool) -> None:
    """ATTACH the DuckLake catalog. The first ATTACH of a writer creates the catalog's tables in Postgres, and two
    first writers on many machines can race there: the loser fails on a duplicate key of `ducklake_metadata`. The
    catalog then exists, so attaching again succeeds; a few tries cover it without a lock across machines."""
    statement = f"ATTACH 'ducklake:bucket_sync_index' AS {LAKE_ALIAS}{' (READ_ONLY)' if read_only else ''}"
    for attempt in range(3):
        try:
            con.execute(statement)
            return
        except duckdb.Error as exc:
            raced = "duplicate key" in str(exc).lower() or "already exists" in str(exc).lower()
            if read_only or not raced or attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))


def _sql_string(value: str) -> str:
    """A SQL string literal, for the one statement that takes no parameters (LOAD)."""
    return "'" + value.replace("'", "''") + "'"


def _is_commit_conflict(exc: duckdb.Error) -> bool:
    """Whether DuckLake refused a commit because another transaction changed the same table first."""
    return isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower()


def _s3_secret(con: duckdb.DuckDBPyConnection, data_path: str | None) -> None:
    """An S3 secret for the DuckLake data files, from the standard AWS_* variables, scoped to the data bucket (all of
    S3 for a reader, which takes the catalog's data path without knowing it beforehand).

    Values travel as parameters, never as SQL text; the secret lives in this session's memory only.
    """
    env = os.environ
    options = ["TYPE s3"]
    params: dict[str, Any] = {}
    if data_path is not None:
        options.append("SCOPE $scope")
        params["scope"] = "s3://" + data_path.removeprefix("s3://").split("/", 1)[0]
    if env.get("AWS_ACCESS_KEY_ID"):
        options += ["KEY_ID $key_id", "SECRET $secret"]
        params |= {"key_id": env["AWS_ACCESS_KEY_ID"], "secret": env.get("AWS_SECRET_ACCESS_KEY", "")}
        remember(params["secret"])
    if env.get("AWS_SESSION_TOKEN"):
        options.append("SESSION_TOKEN $token")
        params["token"] = env["AWS_SESSION_TOKEN"]
        remember(params["token"])
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options.append("REGION $region")
        params["region"] = region
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        if has_url_userinfo(endpoint):
            remember(endpoint)
            raise IndexSettingError("AWS_ENDPOINT_URL holds credentials before '@'; remove them")
        parts = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
        options += ["ENDPOINT $endpoint", "URL_STYLE 'path'", f"USE_SSL {str(parts.scheme == 'https').lower()}"]
        params["endpoint"] = parts.netloc + parts.path.rstrip("/")
    con.execute(f"CREATE SECRET bucket_sync_index_s3 ({', '.join(options)})", params)


class IndexAccess(BaseModel):
    """The index, opened briefly per write so other readers and writers get their turn.

    `MediaIndex` (resources/index_resource.py) is this as the code location's `index` resource; `bucket-sync status`
    and `query` read through this class itself, which does not import Dagster.
    """

    model_config = ConfigDict(frozen=True)

    url: str | None = Field(
        None,
        description=(
            f"a DuckDB file path, or {DUCKLAKE_POSTGRES}<libpq connection string, no password>; default "
            f"${INDEX_ENV}, else $BUCKET_SYNC_HOME/index.duckdb"
        ),
    )
    data_path: str | None = Field(
        None,
        description=(
            f"DuckLake only: a folder or s3:// URL for the data files; default ${INDEX_DATA_ENV}, else "
            "index-data/ in $BUCKET_SYNC_STATE (or $BUCKET_SYNC_HOME)"
        ),
    )
    password_env: str = Field(
        "PGPASSWORD", description="DuckLake only: the environment variable holding the Postgres password"
    )
    lock_timeout_s: float = Field(
        120.0, description="how long a writer waits for the DuckDB file's lock, or retries DuckLake commit conflicts"
    )

    @property
    def target(self) -> IndexLocation:
        """The parsed setting: a DuckDB file, or a DuckLake catalog and data path."""
        if self.url:
            return parse_index_url(self.url, self.data_path)
        from_env = os.environ.get(INDEX_ENV)
        if from_env:
            return parse_index_url(from_env, self.data_path, setting=f"${INDEX_ENV}")
        return parse_index_url(default_index_path(), self.data_path)

    @property
    def file(self) -> Path:
        """The DuckDB file of a file index (a DuckLake index has none: see `target`)."""
        target = self.target
        if target.file is None:
            raise IndexUnavailable(f"the index is {target.describe()}, not a DuckDB file")
        return target.file

    @property
    def location(self) -> str:
        """Where the index is, for messages and metadata: a path, or the DuckLake catalog; never a credential."""
        return self.target.describe()

    def exists(self) -> bool:
        """Whether there is an index to read: the file exists, or the DuckLake catalog holds the tables."""
        location = self.target
        if location.file is not None:
            return location.file.exists()
        try:
            with self.connect(read_only=True) as con:
                row = con.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE database_name = $db AND table_name = 'syncs'",
                    {"db": LAKE_ALIAS},
                ).fetchone()
        except IndexMissing:
            return False
        return bool(row and row[0])

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the index; a writer's session also makes sure the tables exist.

        A DuckDB file: waits out another process's lock instead of failing the step. DuckLake: an in-memory DuckDB
        session with the catalog attached (read-only for readers) and selected, so queries name tables unqualified.
        """
        location = self.target
        if location.lake:
            con = self._attach_lake(location, read_only=read_only)
        else:
            assert location.file is not None
            location.file.parent.mkdir(parents=True, exist_ok=True)
            con = self._open(read_only=read_only and location.file.exists())
        try:
            if not read_only:
                self._create_tables(con, lake=location.lake)
            yield con
        finally:
            con.close()

    @contextmanager
    def connect_untrusted(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the index read-only for SQL a person typed: it can read the index's tables and nothing else.

        Read-only alone still lets SQL write any file (`COPY ... TO`), read any file (`read_text`), ATTACH other
        databases and fetch extensions from the network; UNTRUSTED_SQL_CONFIG takes those away for this connection.
        """
        target = self.target
        if target.lake:
            con = self._sandboxed_lake(target)
        else:
            path = self.file
            if not path.exists():
                raise IndexUnavailable(f"no index at {path} yet: run `bucket-sync sync NAME` first")
            con = self._open(read_only=True, config=UNTRUSTED_SQL_CONFIG)
        try:
            yield con
        finally:
            con.close()

    def _sandboxed_lake(self, target: IndexLocation) -> duckdb.DuckDBPyConnection:
        """DuckLake for SQL a person typed: attach read-only first (that needs the extensions, the catalog's server
        and the data files), then take the same things away as for a file, except reading the data files, which stay
        readable through the catalog only (`allowed_directories`), and lock the configuration.

        The attached catalog's Postgres database stays readable (read-only) with the reader's own credentials.
        """
        con = self._attach_lake(target, read_only=True)
        try:
            row = con.execute(
                f"SELECT value FROM __ducklake_metadata_{LAKE_ALIAS}.ducklake_metadata WHERE key = 'data_path'"
            ).fetchone()
            con.execute("SET allowed_directories = $dirs", {"dirs": [row[0]] if row and row[0] else []})
            for name, value in UNTRUSTED_SQL_CONFIG.items():  # lock_configuration comes last
                con.execute(f"SET {name} = {str(value).lower()}")
        except BaseException:
            con.close()
            raise
        return con

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

    def _attach_lake(self, location: IndexLocation, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A DuckDB session with the DuckLake catalog attached as LAKE_ALIAS. Credentials reach DuckDB as secrets,
        created from parameters; the connection string and data path travel in a DuckLake secret, never in SQL."""
        assert location.catalog is not None and location.data_path is not None
        if not ENV_NAME.match(self.password_env):
            raise IndexSettingError("MediaIndex.password_env must name an environment variable")
        con = duckdb.connect(config=dict(_OFFLINE_EXTENSIONS))
        try:
            # A reader takes the catalog's data path, which may be on S3 whatever this machine's default says: it
            # can read S3 data files whenever S3 credentials are in the environment.
            s3 = location.data_path.startswith("s3://") or (read_only and bool(os.environ.get("AWS_ACCESS_KEY_ID")))
            if not s3 and not read_only:
                Path(location.data_path).mkdir(parents=True, exist_ok=True)
            for name in ("ducklake", "postgres_scanner", *(("httpfs",) if s3 else ())):
                con.execute(f"LOAD {_sql_string(str(extension_path(name)))}")
            metadata = "MAP {'TYPE': 'postgres'}"
            password = os.environ.get(self.password_env)
            if password:
                remember(password)
                con.execute("CREATE SECRET bucket_sync_index_pg (TYPE postgres, PASSWORD $pw)", {"pw": password})
                metadata = "MAP {'TYPE': 'postgres', 'SECRET': 'bucket_sync_index_pg'}"
            if s3:
                _s3_secret(con, None if read_only else location.data_path)
            # A writer names the data path (a different one than the catalog's is refused: data would be split); a
            # reader takes the catalog's, so `status` and `query` work from any machine with the catalog alone.
            data = "" if read_only else ", DATA_PATH $data"
            con.execute(
                f"CREATE SECRET bucket_sync_index (TYPE ducklake, METADATA_PATH $catalog{data}, "
                f"METADATA_PARAMETERS {metadata})",
                {"catalog": location.catalog, **({} if read_only else {"data": location.data_path})},
            )
            _attach_once_created(con, read_only=read_only)
            con.execute(f"USE {LAKE_ALIAS}")
        except IndexUnavailable:
            con.close()
            raise
        except duckdb.Error as exc:
            con.close()
            if read_only and "does not exist" in str(exc):
                missing = f"no index in {location.describe()} yet: run `bucket-sync sync NAME` first"
                raise IndexMissing(missing) from None
            raise IndexUnavailable(
                scrub(f"the index {location.describe()} cannot be attached: {exc}".strip())
            ) from None
        return con

    def _create_tables(self, con: duckdb.DuckDBPyConnection, *, lake: bool) -> None:
        if not lake:
            con.execute(SCHEMA)
            return
        # Two first writers may create the tables at once; the loser of that commit finds them made.
        self._transaction(con, lambda c: c.execute(schema(keys=False)))

    def _transaction(self, con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """Run `work` in one transaction. A DuckLake commit that conflicts with another run's (both changed one
        table) is rolled back and `work` runs again, from the start, against the newer snapshot, with a growing,
        jittered pause, for up to `lock_timeout_s`. On a DuckDB file no commit conflicts (one writer holds it)."""
        deadline = time.monotonic() + self.lock_timeout_s
        attempt = 0
        while True:
            con.execute("BEGIN TRANSACTION")
            try:
                result = work(con)
                con.execute("COMMIT")
                return result
            except duckdb.Error as exc:
                _rollback(con)
                if not _is_commit_conflict(exc) or time.monotonic() > deadline:
                    raise
            except BaseException:
                _rollback(con)
                raise
            attempt += 1
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))

    def record_connection(self, con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
        con.execute(_RECORD_CONNECTION, row)

    def apply_sync(
        self,
        connection_row: dict[str, Any],
        snapshot: SyncSnapshot,
        rules: tuple[str, ...],
        counts: SyncCounts,
        attached: list[str] | None = None,
    ) -> SyncFolded:
        """Fold one sync into the index in a single transaction: objects, tombstones, moves, facts, violations and
        history. Either all of it is visible afterwards or none of it is.

        Nothing is ever removed from `objects` or `media`: a vanished key is marked deleted (and moved, when its
        content reappeared under another key), and its facts stay queryable. The connection's violations are swapped
        for the sync's in the same transaction, so a reader never sees one sync's violations beside another sync's
        objects. `attached` (the catalog's connection names) flags every other connection as detached in the same
        transaction: the index's only writer is a sync, which holds the `duckdb_index` pool. Returns the violation
        count per rule now in the index, and how many of the sync's violations the previous sync did not have.
        """
        params = {
            "name": counts.connection,
            "changes": str(snapshot.changes),
            "probes": str(snapshot.probes),
            "moves": str(snapshot.moves),
            "violations": str(snapshot.violations),
            "rules": list(rules),
        }

        def fold(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[Any, ...]], int]:
            self.record_connection(con, connection_row)
            # Counted before the swap below, against the rows the previous committed sync left: a (key, rule) pair
            # is new when that sync did not report it. A fixed file that breaks again counts as new again.
            new = con.execute(_NEW_VIOLATIONS, {k: params[k] for k in ("name", "violations", "rules")}).fetchone()
            if attached is not None:
                con.execute(
                    "UPDATE connections SET detached = NOT list_contains($names, name) "
                    "WHERE detached = list_contains($names, name)",
                    {"names": attached},
                )
            for statement in _APPLY_SYNC:
                con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
            if snapshot.skipped is None:
                con.execute(_CLEAR_SKIPPED, {"name": counts.connection})
            else:
                for statement in _APPLY_SKIPPED:
                    con.execute(statement, {"name": counts.connection, "skipped": str(snapshot.skipped)})
            con.execute(
                """
                INSERT INTO syncs BY NAME SELECT $connection AS connection, $run_id AS run_id,
                    $started_at AS started_at, now() AS finished_at, $full_resync AS full_resync, $listed AS listed,
                    $new AS new, $changed AS changed, $unchanged AS unchanged, $deleted AS deleted, $moved AS moved,
                    $probed AS probed, $carried AS carried, $accepted AS accepted, $violations AS violations,
                    $bytes_stored AS bytes_stored, $bytes_read AS bytes_read, $requests AS requests,
                    $sync_kind AS sync_kind, $event_keys AS event_keys
                """,
                counts.__dict__,
            )
            by_rule = con.execute(
                "SELECT rule, count(*) FROM violations WHERE connection = $name GROUP BY rule",
                {"name": counts.connection},
            ).fetchall()
            if by_rule:
                con.executemany(
                    "INSERT INTO sync_violations VALUES ($c, $r, $rule, $n)",
                    [{"c": counts.connection, "r": counts.run_id, "rule": rule, "n": n} for rule, n in by_rule],
                )
            return by_rule, int(new[0]) if new else 0

        with self.connect() as con:
            by_rule, new_violations = self._transaction(con, fold)
        return SyncFolded({rule: int(n) for rule, n in by_rule}, new_violations)

    def committed(self, connection: str, run_id: str) -> bool:
        """Whether run `run_id` folded its sync of `connection` into the index (its `syncs` row exists)."""
        if not self.exists():
            return False
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT count(*) FROM syncs WHERE connection = $c AND run_id = $r", {"c": connection, "r": run_id}
            ).fetchone()
        return bool(row and row[0])


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back whatever is open; a failed COMMIT has already ended its transaction."""
    with suppress(duckdb.Error):
        con.execute("ROLLBACK")
