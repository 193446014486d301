"""The template every cloud provider fills in, so that what is the same for all of them is written once.

A provider module (s3_bucket, gcs_bucket, azure_bucket) says only how it builds its fields from the catalog
settings (resolving secrets through `Secrets`), its obstore store (`_store_parts`) and its SDK client
(`_new_client`), how its SDK lists one page (`_list`) and reads a key obstore cannot address (`_sdk_read`), and how
its errors map (`sdk_errors`, `_read_failure`, `_verdict`, `_write_remedy`). Here, once: the missing-secret path,
paging, the obstore/SDK read split, the "gone or overwritten" handling, scrubbed read and listing failures, the
connection test's skeleton, and the one write bucket-sync makes: a manifest under the prefix of a connection that
publishes (`publish_prefix` set), written whole in one conditional PUT, never anywhere else. The SDK modules are
imported only when a connection of that provider is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Self

import obstore
import pyarrow as pa
from obstore.exceptions import (
    AlreadyExistsError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.exceptions import BaseError as ObstoreError

from media.cors import CorsRule
from media.cvat import MANIFEST_FILE
from resources.bucket import (
    BucketError,
    ConnectionMisconfigured,
    ConnectionStatus,
    ConnectionTest,
    CorsUnreadable,
    ListingFailed,
    ObjectChanged,
    ObjectGone,
    ObjectVersion,
    PagedListing,
    WriteConflict,
    WriteDenied,
    batch_from_rows,
    changed,
    gone,
    obstore_addressable,
    obstore_client_options,
    obstore_retry_config,
)
from resources.secrets import (
    SecretError,
    check_sdk_path_variables,
    remember_key_material,
    resolve_env,
    resolve_env_path,
    scrub,
)

if TYPE_CHECKING:
    from resources.catalog import Connection
    from resources.settings import ProviderSettings

#: What a connection test concluded from an error: status, detail, remedy.
Verdict = tuple[ConnectionStatus, str, str]
#: Listing rows page by page, each page with the token of the next (None: the end).
Pages = Iterator[tuple[list[dict[str, Any]], str | None]]
#: A version no object can have: S3 etags are hex digests, Azure's are hex counters, GCS generations are microsecond
#: timestamps. A write conditional on it is refused (412, or 404 for a missing key) by a store that lets the caller
#: write, and 403 by one that does not; it never writes.
IMPOSSIBLE_VERSION = ObjectVersion(etag='"bucket-sync-write-probe"', version="1")


class Secrets:
    """The secrets one connection's `auth` names: each message names the variable and the field, never the value."""

    def __init__(self, conn: Connection, auth: Any) -> None:
        self.connection, self.auth = conn.name, auth

    def __call__(self, field: str) -> str:
        """The value of the environment variable that `auth.<field>` names."""
        return resolve_env(getattr(self.auth, field) or "", connection=self.connection, field=f"auth.{field}")

    def path(self, field: str) -> str:
        """The path that the variable `auth.<field>` names holds, refusing key content in its place."""
        return resolve_env_path(getattr(self.auth, field), connection=self.connection, field=f"auth.{field}")

    def key_file(self, field: str, base_dir: str, what: str) -> Path:
        """The key file the variable `auth.<field>` names, checked without ever putting the variable's value in a
        message, its private parts remembered so no text can carry them.

        The value is a path, but a person may have put the key itself there; and a path the system cannot use (too
        long, a NUL byte) raises an error quoting it. Both become a SecretError that names the variable.
        """
        var, where = getattr(self.auth, field), f"connection '{self.connection}': environment variable"
        try:
            file = Path(self.path(field)).expanduser()
            file = file if file.is_absolute() else Path(base_dir) / file
            found = file.is_file()
        except (OSError, ValueError, RuntimeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SecretError(
                f"{where} {var} (named by auth.{field}) holds a path the system cannot use ({reason}); "
                f"set it to the path of {what}"
            ) from None
        if not found:
            raise SecretError(f"{where} {var} (named by auth.{field}) points at no file; set it to the path of {what}")
        with suppress(OSError, ValueError):  # unreadable or not text: the SDK will say so, without the content
            remember_key_material(file.read_text(encoding="utf-8"))
        return file

    def sdk_paths(self, names: tuple[str, ...]) -> None:
        """Refuse key content in path variables the SDK reads on its own: it would quote them in its errors."""
        check_sdk_path_variables(names, connection=self.connection, field=f"auth.mode {self.auth.mode}")


class StoreParts(NamedTuple):
    """What a provider's obstore store is made of; timeouts and retries are added here, the same for all."""

    store_class: Any
    config: dict[str, Any]
    endpoint: str | None
    credential_provider: Any = None


class CloudBucket(PagedListing):
    """The shared half of a cloud bucket connection, mixed in ahead of the provider's Dagster resource class.

    Each provider declares the pydantic fields `connection`, `bucket` and `timeout_s`, and the hooks below.
    """

    provider: ClassVar[str]
    #: What the bucket and one object are called in a connection test's detail.
    nouns: ClassVar[tuple[str, str]] = ("bucket", "object")
    #: Whether obstore may send the listing's etag as If-Match (not GCS: its listing and data-plane etags differ).
    if_match: ClassVar[bool] = True
    #: What to fix, per auth mode (the field `auth_mode`), when the credentials do not work.
    auth_remedy: ClassVar[dict[str, str]] = {}
    #: The SDK's own error classes: a listing that raises one failed; a read that raises one is scrubbed.
    sdk_errors: ClassVar[tuple[type[Exception], ...]] = ()

    if TYPE_CHECKING:
        connection: str
        bucket: str
        timeout_s: float
        #: The connection's prefix when it publishes its manifests (`publish_manifest`), else None: no write at all.
        publish_prefix: str | None

    # --- opening: the missing-secret path, once --------------------------------------------------------------

    @classmethod
    def open(cls, conn: Connection, settings: ProviderSettings) -> Self:
        """The connection for a validated catalog entry; an unusable secret is ConnectionMisconfigured."""
        try:
            fields = cls._fields(conn, settings, Secrets(conn, settings.auth))  # type: ignore[attr-defined]
        except SecretError as exc:
            raise ConnectionMisconfigured(str(exc)) from None
        publish_prefix = conn.prefix if conn.publish_manifest else None
        return cls(connection=conn.name, bucket=conn.bucket or "", publish_prefix=publish_prefix, **fields)

    @classmethod
    def _fields(cls, conn: Connection, settings: Any, secret: Secrets) -> dict[str, Any]:
        """The resource's fields for this entry, secrets resolved."""
        raise NotImplementedError

    @property
    def connection_name(self) -> str:
        return self.connection

    # --- clients, built once per bucket object ---------------------------------------------------------------

    def _store_parts(self) -> StoreParts:
        raise NotImplementedError

    def _new_client(self, *, for_test: bool) -> Any:
        """An SDK client; `for_test`: one without retries, for a connection test that must answer within seconds."""
        raise NotImplementedError

    @cached_property
    def obstore_store(self) -> Any:
        parts = self._store_parts()
        return parts.store_class(
            self.bucket,
            config=parts.config,
            client_options=obstore_client_options(parts.endpoint, self.timeout_s),
            retry_config=obstore_retry_config(),
            credential_provider=parts.credential_provider,
        )

    @cached_property
    def sdk_client(self) -> Any:
        return self._new_client(for_test=False)

    # --- listing ---------------------------------------------------------------------------------------------

    def _list(self, prefix: str, page_size: int, token: str | None) -> Pages:
        """Rows of LISTING_SCHEMA, page by page from the page `token` names (None: the first)."""
        raise NotImplementedError

    def _listing_failed(self, prefix: str) -> str:
        """What was listed and how hard it was tried, e.g. "s3://media/cats/ failed after 6 attempts"."""
        raise NotImplementedError

    def _pages(self, prefix: str, page_size: int, token: str | None) -> Iterator[tuple[pa.RecordBatch, str | None]]:
        try:
            for rows, next_token in self._list(prefix, page_size, token):
                yield batch_from_rows(rows), next_token
        except (*self.sdk_errors, OSError) as exc:
            raise ListingFailed(
                f"connection '{self.connection}': listing {self._listing_failed(prefix)}: {scrub(str(exc))}; "
                f"check the endpoint, the network and the credentials with `bucket-sync test {self.connection}`, "
                "then sync again"
            ) from None

    # --- one object's state: the delta sync's HEAD ------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        """`key`'s listing row from one metadata request through the SDK that lists (None: not found); raises the
        SDK's own errors. The SDK, not obstore: only the listing's own client fills etag, last_modified, version and
        content_md5 the way the listing does (GCS's JSON etag is not its XML one, S3 listings carry no version)."""
        raise NotImplementedError

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._head(key)
        except BucketError:
            raise
        except (*self.sdk_errors, ObstoreError, OSError) as exc:
            if self._read_failure(exc) == "gone":
                return None
            raise BucketError(
                f"connection '{self.connection}': reading the state of '{key}' failed: {type(exc).__name__}: "
                f"{scrub(str(exc))}"
            ) from None

    # --- reads -----------------------------------------------------------------------------------------------

    def _sdk_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """Bytes [start, end) of a key obstore would rewrite, through the SDK, refused if `etag` no longer holds."""
        raise NotImplementedError

    def _read_failure(self, exc: Exception) -> Literal["gone", "changed"] | None:
        """Whether an SDK error says the object is gone, or changed (a failed precondition), or neither."""
        return None

    def _served_matches(self, etag: str, meta: Any) -> bool:
        """Without If-Match: whether the object obstore served is the listed one (its response headers)."""
        return True

    def _exists(self, key: str) -> bool:
        """After a failed precondition: whether `key` still exists (Azurite answers If-Match on a deleted blob with
        412, not 404). The default trusts the 412."""
        return True

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        if end <= start:
            return b""
        try:
            if obstore_addressable(key):
                return self._obstore_read(key, start, end, etag)
            return self._sdk_read(key, start, end, etag)
        except (FileNotFoundError, NotFoundError):
            raise gone(key) from None
        except PreconditionError:
            raise self._gone_or_changed(key) from None
        except BucketError:
            raise
        except (*self.sdk_errors, ObstoreError, OSError) as exc:
            failure = self._read_failure(exc)
            if failure == "gone":
                raise gone(key) from None
            if failure == "changed":
                raise self._gone_or_changed(key) from None
            # Scrubbed and without its cause: SDKs echo request URLs, and a SAS rides in the query string.
            raise BucketError(
                f"connection '{self.connection}': reading '{key}' failed: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None

    def _obstore_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """A ranged read through obstore. With `etag`, If-Match makes the provider refuse a read of an object
        overwritten since it was listed, so a probe never attaches one version's facts to another's listing row."""
        options: dict[str, Any] = {"range": (start, end)}
        if etag and self.if_match:
            options["if_match"] = etag
        result = obstore.get(self.obstore_store, key, options=options)  # type: ignore[arg-type]
        data = bytes(result.bytes())
        if etag and not self.if_match and not self._served_matches(etag, result.meta):
            raise changed(key)
        return data

    def _gone_or_changed(self, key: str) -> ObjectGone | ObjectChanged:
        return changed(key) if self._exists(key) else gone(key)

    # --- the one write: a manifest, for a connection that publishes ----------------------------------------------

    def _put(self, key: str, data: bytes, expected: ObjectVersion | None, *, probe: bool = False) -> ObjectVersion:
        """One conditional PUT of `data` at `key` (only if absent when `expected` is None); raises the provider's own
        errors. `probe`: the connection test's write check, which must answer at once (no retries)."""
        mode: Any = "create"
        if expected is not None:
            mode = {k: v for k, v in (("e_tag", expected.etag), ("version", expected.version)) if v}
        result = obstore.put(self.obstore_store, key, data, mode=mode, use_multipart=False)
        return ObjectVersion(etag=result.get("e_tag"), version=result.get("version"))

    def _get_whole(self, key: str) -> tuple[bytes, ObjectVersion] | None:
        try:
            result = obstore.get(self.obstore_store, key)
        except (FileNotFoundError, NotFoundError):
            return None
        meta = result.meta
        return bytes(result.bytes()), ObjectVersion(etag=meta.get("e_tag"), version=meta.get("version"))

    def _write_failure(self, exc: Exception) -> Literal["conflict", "denied"] | None:
        """Whether a provider error from `_put` says another version is there, or the write is not allowed."""
        if isinstance(exc, PreconditionError | AlreadyExistsError):
            return "conflict"
        return "denied" if isinstance(exc, PermissionDeniedError | UnauthenticatedError) else None

    def _write_remedy(self, key: str) -> str:
        """The least permission that writing `key` takes, as a person grants it."""
        raise NotImplementedError

    def _writable(self, key: str) -> None:
        """Refuse any write but a manifest under the prefix of a connection that publishes."""
        prefix = self.publish_prefix
        if prefix is None:
            raise BucketError(
                f"connection '{self.connection}': refusing to write '{key}': publish_manifest is off, and a "
                "connection that does not publish never writes to its bucket"
            )
        if not key.startswith(prefix) or not key.endswith(".jsonl") or not obstore_addressable(key):
            raise BucketError(
                f"connection '{self.connection}': refusing to write '{key}': only manifests (.jsonl) under the "
                f"prefix '{prefix}' are ever written"
            )

    def put_manifest(self, key: str, data: bytes, expected: ObjectVersion | None) -> ObjectVersion:
        self._writable(key)
        try:
            return self._put(key, data, expected)
        except BucketError:
            raise
        except (*self.sdk_errors, ObstoreError, OSError) as exc:
            failure = self._write_failure(exc)
            where = f"connection '{self.connection}': writing '{key}'"
            if failure == "conflict":
                raise WriteConflict(f"{where}: another version of it is there than bucket-sync expected") from None
            if failure == "denied":
                raise WriteDenied(f"{where} is not allowed: {self._write_remedy(key)}") from None
            raise BucketError(f"{where} failed: {type(exc).__name__}: {scrub(str(exc))}") from None

    # --- CORS: read-only, for the audit of the web origin that loads the media ---------------------------------

    def _cors_rules(self) -> list[CorsRule]:
        """The provider's CORS rules, provider-neutral, in the order it evaluates them; raises its own errors."""
        raise NotImplementedError

    def _cors_permission(self) -> str:
        """The permission that reading the CORS configuration takes, as a person grants it."""
        raise NotImplementedError

    def _cors_denied(self, exc: Exception) -> bool:
        """Whether an SDK error from `_cors_rules` says the credentials may not read the CORS configuration."""
        return False

    def cors_rules(self) -> list[CorsRule] | None:
        try:
            return self._cors_rules()
        except (*self.sdk_errors, OSError) as exc:
            if self._cors_denied(exc):
                raise CorsUnreadable(
                    f"connection '{self.connection}': may not read the CORS configuration of {self.nouns[0]} "
                    f"'{self.bucket}'; {self._cors_permission()}"
                ) from None
            raise BucketError(
                f"connection '{self.connection}': reading the CORS configuration failed: {type(exc).__name__}: "
                f"{scrub(str(exc))}"
            ) from None

    def read_manifest(self, key: str) -> tuple[bytes, ObjectVersion] | None:
        self._writable(key)
        try:
            return self._get_whole(key)
        except (*self.sdk_errors, ObstoreError, OSError) as exc:
            raise BucketError(
                f"connection '{self.connection}': reading '{key}' failed: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None

    def _test_write(self, read_detail: str) -> ConnectionTest:
        """After the read checks passed: whether the manifest key may be written, found with a PUT conditional on a
        version no object has, which a store that allows the write refuses with 412 (404 for a missing key on S3)
        and one that does not with 403. Nothing is written."""
        key = f"{self.publish_prefix or ''}{MANIFEST_FILE}"
        where = f"'{key}' in {self.nouns[0]} '{self.bucket}'"
        try:
            self._put(key, b"", IMPOSSIBLE_VERSION, probe=True)
        except Exception as exc:
            failure = self._write_failure(exc) if isinstance(exc, (*self.sdk_errors, ObstoreError, OSError)) else None
            if failure == "conflict":
                return self._result(
                    ConnectionStatus.AVAILABLE, f"{read_detail}; may write the manifest {where} (publish_manifest)"
                )
            if failure == "denied":
                return self._result(
                    ConnectionStatus.FORBIDDEN,
                    f"{read_detail}, but may not write the manifest {where}, which publish_manifest needs",
                    self._write_remedy(key),
                )
            verdict = self._verdict(exc)
            if verdict is None:
                raise
            return self._result(*verdict)
        return self._result(
            ConnectionStatus.MISCONFIGURED,
            f"{read_detail}, but the store ignored the condition of a write probe and wrote an empty object at "
            f"{where}: it does not support conditional writes, so publishing could overwrite another writer's manifest",
            "turn publish_manifest off for this connection, or use a store that honours If-Match on PUT",
        )

    # --- the connection test ---------------------------------------------------------------------------------

    def _probe(self) -> bool:
        """List one key and read one byte of it with a client that does not retry; whether there was one."""
        raise NotImplementedError

    def _verdict(self, exc: Exception) -> Verdict | None:
        """What a connection test's error means, or None for an error this provider does not know."""
        return None

    def _credentials_remedy(self) -> str:
        return self.auth_remedy.get(getattr(self, "auth_mode", ""), "check the auth settings of this connection")

    def _result(self, status: ConnectionStatus, detail: str, remedy: str = "") -> ConnectionTest:
        return ConnectionTest(self.connection, self.provider, status, scrub(detail), remedy)

    def test(self) -> ConnectionTest:
        """List one key, then read one byte of it, without retries: exactly the permissions a sync needs; and for a
        connection that publishes, the permission to write its manifest key."""
        try:
            read_one = self._probe()
        except ConnectionMisconfigured as exc:
            return self._result(ConnectionStatus.MISCONFIGURED, str(exc), self._credentials_remedy())
        except Exception as exc:
            verdict = self._verdict(exc)
            if verdict is None:
                raise
            return self._result(*verdict)
        container, item = self.nouns
        detail = f"listed {container} '{self.bucket}'" + (f" and read one {item}" if read_one else " (it is empty)")
        if self.publish_prefix is not None:
            return self._test_write(detail)
        return self._result(ConnectionStatus.AVAILABLE, detail)
