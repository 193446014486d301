"""Google Cloud Storage as a bucket connection.

Built on dagster-gcp's `GCSResource`, which holds the configuration and serves google-cloud-storage for the
control plane and for listing (exact keys, see resources/bucket.py); ranged reads go through obstore's
GCSStore.

One GCS quirk shapes the read path: the JSON API (listing) and the XML API (obstore's reads) report
different ETags for the same object (JSON: an encoding of generation and metageneration; XML: the MD5 for
non-composite objects), so the listing's etag cannot be sent as `If-Match` to the data plane. Reads are
therefore checked against the response headers, which describe exactly the bytes returned: the same ETag, or
the generation that the listing's ETag encodes.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
from dagster_gcp.gcs import GCSResource
from pydantic import Field, PrivateAttr

from resources.bucket import (
    CONNECT_TIMEOUT_S,
    LISTING_RETRY_WINDOW_S,
    REQUEST_TIMEOUT_S,
    RETRY_INITIAL_BACKOFF_S,
    RETRY_MAX_BACKOFF_S,
    RETRY_WINDOW_S,
    ConnectionMisconfigured,
    ConnectionStatus,
    ConnectionTest,
    ListingFailed,
    ObjectChanged,
    ObjectGone,
    PagedListing,
    ProviderSettings,
    StrictModel,
    batch_from_rows,
    obstore_addressable,
    obstore_client_options,
    obstore_retry_config,
)
from resources.catalog import Connection
from resources.secrets import (
    SecretError,
    check_sdk_path_variables,
    remember_key_material,
    resolve_env_path,
    scrub,
)

#: Read-only scope: a sync never writes to the bucket, so its token should not be able to.
_READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"

_ROLE_REMEDY = (
    "grant the principal roles/storage.objectViewer on the bucket (or a custom role with "
    "storage.objects.list and storage.objects.get)"
)


class GCSOptions(StrictModel):
    endpoint: str | None = Field(None, description="endpoint override, e.g. a fake-gcs-server emulator")
    project: str | None = Field(None, description="project for the client (defaults to the credentials' project)")
    concurrency: int = Field(32, ge=1, le=256)


class GCSServiceAccountAuth(StrictModel):
    """A service-account key file; the catalog names the variable holding its path, never the key itself."""

    mode: Literal["service_account"]
    key_file_env: str


class GCSDefaultAuth(StrictModel):
    """Application default credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud ADC, workload identity."""

    mode: Literal["default"] = "default"


class GCSAnonymousAuth(StrictModel):
    """Unsigned requests, for public buckets (allUsers has objectViewer)."""

    mode: Literal["anonymous"]


GCSAuth = Annotated[GCSServiceAccountAuth | GCSDefaultAuth | GCSAnonymousAuth, Field(discriminator="mode")]


class GCSSettings(ProviderSettings):
    options: GCSOptions = GCSOptions()
    auth: GCSAuth = GCSDefaultAuth()


def gcs_bucket_name_problem(name: str | None) -> str | None:
    """The GCS bucket naming rule `name` breaks, if any (https://cloud.google.com/storage/docs/buckets#naming)."""
    if not name:
        return "a GCS connection needs `bucket`"
    if not re.fullmatch(r"[a-z0-9._-]+", name):
        return f"GCS bucket name '{name}' may only hold lowercase letters, digits, '-', '_' and '.'"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return f"GCS bucket name '{name}' must start and end with a letter or digit"
    if "." in name:
        if not 3 <= len(name) <= 222:
            return f"GCS bucket name '{name}' with dots must be 3 to 222 characters long"
        if any(len(part) > 63 for part in name.split(".")):
            return f"GCS bucket name '{name}': each dot-separated component must be at most 63 characters"
        if any(not part for part in name.split(".")):
            return f"GCS bucket name '{name}' must not contain two adjacent periods"
    elif not 3 <= len(name) <= 63:
        return f"GCS bucket name '{name}' must be 3 to 63 characters long (up to 222 only with dots)"
    try:
        ipaddress.IPv4Address(name)
        return f"GCS bucket name '{name}' must not be an IP address in dotted-decimal notation"
    except ValueError:
        pass
    if name.startswith("goog"):
        return f"GCS bucket name '{name}' must not begin with the reserved prefix 'goog'"
    if re.search(r"g[o0][o0]gle", name):
        return f"GCS bucket name '{name}' must not contain 'google' or a close misspelling of it"
    return None


def validate_gcs(conn: Connection) -> str | None:
    problem = gcs_bucket_name_problem(conn.bucket)
    return problem and f"field 'bucket': {problem}"


def _generation_from_json_etag(etag: str) -> int | None:
    """The generation a GCS JSON API etag encodes (protobuf field 1, a varint), or None if it is not one."""
    try:
        raw = base64.b64decode(etag.strip('"'), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 2 or raw[0] != 0x08:
        return None
    value, shift = 0, 0
    for byte in raw[1:]:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value
        if shift > 63:
            return None
    return None


def _remember_key_file_secrets(file: Path) -> None:
    """The key file's private key is the secret (the variable only holds its path): keep it out of any text."""
    try:
        remember_key_material(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable or not text: google-auth will say so, without the content
        return


def _retry(window_s: float) -> Any:
    """google-cloud-storage's own retry predicate (429, 500, 502, 503, 504, connection errors, timeouts) with our
    backoff, bounded to `window_s` in total."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_delay(
        initial=RETRY_INITIAL_BACKOFF_S, maximum=RETRY_MAX_BACKOFF_S, multiplier=2.0
    ).with_timeout(window_s)


def _md5_hex(md5_b64: str | None) -> str | None:
    if not md5_b64:
        return None
    try:
        return base64.b64decode(md5_b64).hex()
    except (binascii.Error, ValueError):
        return None


#: Path variables that google-auth reads on its own for application default credentials.
ADC_PATH_VARIABLES = ("GOOGLE_APPLICATION_CREDENTIALS",)


def _key_file(conn: Connection, var: str) -> Path:
    """The service-account key file that `var` names, checked without ever putting the variable's value in a message.

    The value is a path, but a person may have put the key JSON itself there; and a path the system cannot use
    (too long, a NUL byte) raises an error quoting it. Both become a ConnectionMisconfigured that names the variable.
    """
    path = resolve_env_path(var, connection=conn.name, field="auth.key_file_env")
    try:
        file = Path(path).expanduser()
        if not file.is_absolute():
            file = Path(conn.base_dir) / file
        found = file.is_file()
    except (OSError, ValueError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConnectionMisconfigured(
            f"connection '{conn.name}': environment variable {var} (named by auth.key_file_env) holds a path the "
            f"system cannot use ({reason}); set it to the path of the service-account JSON key"
        ) from None
    if not found:
        raise ConnectionMisconfigured(
            f"connection '{conn.name}': environment variable {var} (named by "
            "auth.key_file_env) points at no file; set it to the path of the service-account JSON key"
        )
    _remember_key_file_secrets(file)
    return file


class GCSBucket(PagedListing, GCSResource):
    """One GCS bucket connection. `key_file` is a path; the secret is the file's content, never read here."""

    connection: str
    bucket: str
    auth_mode: Literal["service_account", "default", "anonymous"] = "default"
    key_file: str | None = None
    endpoint: str | None = None
    timeout_s: float = REQUEST_TIMEOUT_S
    _store: Any = PrivateAttr(default=None)
    _client: Any = PrivateAttr(default=None)

    @classmethod
    def from_connection(cls, conn: Connection) -> GCSBucket:
        settings = GCSSettings.model_validate({"options": conn.options, "auth": conn.auth})
        opts, auth = settings.options, settings.auth
        key_file = None
        try:
            if isinstance(auth, GCSServiceAccountAuth):
                key_file = str(_key_file(conn, auth.key_file_env))
            elif isinstance(auth, GCSDefaultAuth):
                check_sdk_path_variables(ADC_PATH_VARIABLES, connection=conn.name, field="auth.mode default")
        except SecretError as exc:
            raise ConnectionMisconfigured(str(exc)) from None
        return cls(
            connection=conn.name,
            bucket=conn.bucket or "",
            project=opts.project,
            auth_mode=auth.mode,
            key_file=key_file,
            endpoint=opts.endpoint,
        )

    @property
    def connection_name(self) -> str:
        return self.connection

    @property
    def provider(self) -> str:
        return "gcs"

    def _credentials(self) -> tuple[Any, str | None]:
        """google-auth credentials for the mode, and the project they imply."""
        if self.auth_mode == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials(), self.project
        if self.auth_mode == "service_account":
            from google.oauth2 import service_account

            creds = service_account.Credentials.from_service_account_file(self.key_file, scopes=[_READ_SCOPE])
            # A self-signed JWT, as object_store sends on the data plane: no round trip to the token endpoint.
            creds = creds.with_always_use_jwt_access(True)
            return creds, self.project or creds.project_id
        import google.auth

        creds, project = google.auth.default(scopes=[_READ_SCOPE])
        return creds, self.project or project

    def get_client(self) -> Any:
        """google-cloud-storage with the mode's credentials and, for emulators, the endpoint override."""
        if self._client is None:
            from google.cloud import storage

            try:
                creds, project = self._credentials()
            except Exception as exc:  # DefaultCredentialsError, malformed key file
                raise ConnectionMisconfigured(
                    f"connection '{self.connection}': no usable GCS credentials ({scrub(str(exc))}); "
                    + self._credentials_remedy()
                ) from None
            client_options = {"api_endpoint": self.endpoint} if self.endpoint else None
            self._client = storage.Client(
                project=project or "bucket-sync", credentials=creds, client_options=client_options
            )
        return self._client

    def _credentials_remedy(self) -> str:
        if self.auth_mode == "service_account":
            return "point the variable named by auth.key_file_env at a valid service-account JSON key"
        if self.auth_mode == "default":
            return (
                "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS, "
                "or use auth.mode service_account"
            )
        return "check options.endpoint"

    def _obstore(self) -> Any:
        if self._store is None:
            from obstore.store import GCSStore

            config: dict[str, Any] = {}
            provider = None
            if self.endpoint:
                config["base_url"] = self.endpoint.rstrip("/")
            if self.auth_mode == "anonymous":
                config["skip_signature"] = True
            elif self.auth_mode == "service_account":
                config["service_account"] = self.key_file
            else:
                # google-auth understands every ADC flavour (user, impersonated, external account, metadata);
                # object_store's own chain does not, and the provider refreshes tokens as they expire.
                from obstore.auth.google import GoogleCredentialProvider

                provider = GoogleCredentialProvider(self._credentials()[0])
            self._store = GCSStore(
                self.bucket,
                config=config,
                client_options=obstore_client_options(self.endpoint, self.timeout_s),  # type: ignore[arg-type]
                retry_config=obstore_retry_config(),  # type: ignore[arg-type]
                credential_provider=provider,
            )
        return self._store

    def _pages(self, prefix: str, page_size: int, token: str | None) -> Iterator[tuple[pa.RecordBatch, str | None]]:
        from google.api_core.exceptions import GoogleAPIError

        try:
            blobs = self.get_client().list_blobs(
                self.bucket,
                prefix=prefix or None,
                page_size=page_size,
                page_token=token,
                timeout=self._timeout,
                retry=_retry(LISTING_RETRY_WINDOW_S),
            )
            for page in blobs.pages:
                rows = [
                    {
                        "key": blob.name,
                        "size": blob.size or 0,
                        "etag": blob.etag,
                        "last_modified": blob.updated,
                        "version": str(blob.generation) if blob.generation is not None else None,
                        "content_md5": _md5_hex(blob.md5_hash),
                    }
                    for blob in page
                ]
                yield batch_from_rows(rows), blobs.next_page_token
        except (GoogleAPIError, OSError) as exc:
            raise ListingFailed(
                f"connection '{self.connection}': listing gs://{self.bucket}/{prefix} failed after retrying for up "
                f"to {LISTING_RETRY_WINDOW_S:.0f} s: {scrub(str(exc))}"
            ) from None

    @property
    def _timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts for google-cloud-storage requests."""
        return (min(self.timeout_s, CONNECT_TIMEOUT_S), self.timeout_s)

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        if obstore_addressable(key):
            return self._obstore_read(key, start, end, etag)
        return self._sdk_read(key, start, end, etag)

    def _obstore_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """A ranged read through obstore, checked against the listing's etag (see the module docstring)."""
        import obstore

        try:
            result = obstore.get(self._obstore(), key, options={"range": (start, end)})
        except FileNotFoundError:
            raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)") from None
        data = bytes(result.bytes())
        if etag and not self._same_object(etag, result.meta):
            raise ObjectChanged(f"'{key}' was overwritten after it was listed (its etag changed)")
        return data

    @staticmethod
    def _same_object(listed_etag: str, meta: Any) -> bool:
        served = (meta.get("e_tag") or "").strip('"')
        if served and served == listed_etag.strip('"'):
            return True
        listed_generation = _generation_from_json_etag(listed_etag)
        return listed_generation is not None and str(listed_generation) == str(meta.get("version"))

    def _sdk_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """Keys obstore would rewrite go through the SDK, pinned to the generation whose etag was checked."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        bucket = self.get_client().bucket(self.bucket)
        try:
            blob = bucket.get_blob(key, timeout=self._timeout, retry=_retry(RETRY_WINDOW_S))
            if blob is None:
                raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)")
            if etag and blob.etag != etag:
                raise ObjectChanged(f"'{key}' was overwritten after it was listed (its etag changed)")
            if end <= start:
                return b""
            return blob.download_as_bytes(
                start=start,
                end=end - 1,
                if_generation_match=blob.generation,
                timeout=self._timeout,
                retry=_retry(RETRY_WINDOW_S),
            )
        except NotFound:
            raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)") from None
        except PreconditionFailed:
            raise ObjectChanged(f"'{key}' was overwritten after it was listed (its generation changed)") from None

    def test(self) -> ConnectionTest:
        """List one object, then read one byte of it, without retries: the permissions a sync needs."""
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        def result(status: ConnectionStatus, detail: str, remedy: str = "") -> ConnectionTest:
            return ConnectionTest(self.connection, "gcs", status, scrub(detail), remedy)

        where = self.endpoint or "storage.googleapis.com"
        try:
            client = self.get_client()
            items = list(client.list_blobs(self.bucket, max_results=1, timeout=(5, 15), retry=None))
            if items:
                items[0].download_as_bytes(start=0, end=0, timeout=(5, 15), retry=None)
        except ConnectionMisconfigured as exc:
            return result(ConnectionStatus.MISCONFIGURED, str(exc), self._credentials_remedy())
        except gexc.NotFound as exc:
            return result(
                ConnectionStatus.NOT_FOUND,
                f"bucket '{self.bucket}' does not exist at {where}: {exc.message}",
                "check `bucket` (GCS bucket names are global; options.endpoint for emulators)",
            )
        except (gexc.Forbidden, gexc.Unauthorized) as exc:
            return result(
                ConnectionStatus.FORBIDDEN,
                f"the credentials cannot list or read bucket '{self.bucket}' ({exc.code}: {exc.message})",
                _ROLE_REMEDY,
            )
        except auth_exc.RefreshError as exc:
            return result(
                ConnectionStatus.FORBIDDEN,
                f"Google rejected the credentials: {exc}",
                "the key or login was revoked or expired: issue a new key for the service account and point "
                "the variable named by auth.key_file_env at it (or re-run gcloud auth "
                "application-default login)",
            )
        except auth_exc.DefaultCredentialsError as exc:
            return result(ConnectionStatus.MISCONFIGURED, f"no GCS credentials: {exc}", self._credentials_remedy())
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            auth_exc.TransportError,
        ) as exc:
            return result(
                ConnectionStatus.UNREACHABLE,
                f"no answer from {where}: {type(exc).__name__}",
                "check options.endpoint, and that this machine can reach it (proxy, firewall, DNS)",
            )
        except gexc.GoogleAPIError as exc:
            return result(ConnectionStatus.MISCONFIGURED, f"GCS answered: {exc}", "check the connection settings")
        detail = f"listed bucket '{self.bucket}'" + (" and read one object" if items else " (it is empty)")
        return result(ConnectionStatus.AVAILABLE, detail)
