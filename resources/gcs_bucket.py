"""Google Cloud Storage as a bucket connection.

Built on dagster-gcp's `GCSResource`, which holds the configuration and serves google-cloud-storage for the
control plane and for listing (exact keys, see resources/bucket.py); ranged reads go through obstore's
GCSStore. Settings: resources/settings/gcs.py.

One GCS quirk shapes the read path: the JSON API (listing) and the XML API (obstore's reads) report
different ETags for the same object (JSON: an encoding of generation and metageneration; XML: the MD5 for
non-composite objects), so the listing's etag cannot be sent as `If-Match` to the data plane. Reads are
therefore checked against the response headers, which describe exactly the bytes returned: the same ETag, or
the generation that the listing's ETag encodes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar, Literal

import requests
from dagster_gcp.gcs import GCSResource
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from media.cors import CorsRule
from resources.bucket import (
    CONNECT_TIMEOUT_S,
    LISTING_RETRY_WINDOW_S,
    REQUEST_TIMEOUT_S,
    RETRY_INITIAL_BACKOFF_S,
    RETRY_MAX_BACKOFF_S,
    RETRY_WINDOW_S,
    ConnectionMisconfigured,
    ConnectionStatus,
    ObjectVersion,
    WriteConflict,
    changed,
    gone,
)
from resources.catalog import Connection
from resources.provider_base import CloudBucket, Pages, Secrets, StoreParts, Verdict
from resources.secrets import scrub
from resources.settings.gcs import AUTH_REMEDY, GCSServiceAccountAuth, GCSSettings

#: Read-only scope: a sync never writes to the bucket, so its token should not be able to.
_READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
#: Read-write scope, only for a connection that publishes its manifests (publish_manifest).
_WRITE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
#: Path variables that google-auth reads on its own for application default credentials.
ADC_PATH_VARIABLES = ("GOOGLE_APPLICATION_CREDENTIALS",)


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


def _retry(window_s: float) -> Any:
    """google-cloud-storage's own retry predicate (429, 500, 502, 503, 504, connection errors, timeouts) with our
    backoff, bounded to `window_s` in total."""
    return DEFAULT_RETRY.with_delay(
        initial=RETRY_INITIAL_BACKOFF_S, maximum=RETRY_MAX_BACKOFF_S, multiplier=2.0
    ).with_timeout(window_s)


def _row(blob: Any) -> dict[str, Any]:
    """One listing row from the JSON API's object resource, as a listing page or a single get returns it."""
    return {
        "key": blob.name,
        "size": blob.size or 0,
        "etag": blob.etag,
        "last_modified": blob.updated,
        "version": str(blob.generation) if blob.generation is not None else None,
        "content_md5": _md5_hex(blob.md5_hash),
    }


def _md5_hex(md5_b64: str | None) -> str | None:
    try:
        return base64.b64decode(md5_b64).hex() if md5_b64 else None
    except (binascii.Error, ValueError):
        return None


class GCSBucket(CloudBucket, GCSResource):
    """One GCS bucket connection. `key_file` is a path; the secret is the file's content, never read here."""

    provider: ClassVar[str] = "gcs"
    if_match: ClassVar[bool] = False
    auth_remedy: ClassVar[dict[str, str]] = AUTH_REMEDY
    sdk_errors: ClassVar[tuple[type[Exception], ...]] = (gexc.GoogleAPIError,)
    connection: str
    bucket: str
    publish_prefix: str | None = None
    auth_mode: Literal["service_account", "default", "anonymous"] = "default"
    key_file: str | None = None
    endpoint: str | None = None
    timeout_s: float = REQUEST_TIMEOUT_S

    @classmethod
    def _fields(cls, conn: Connection, settings: GCSSettings, secret: Secrets) -> dict[str, Any]:
        key_file = None
        if isinstance(settings.auth, GCSServiceAccountAuth):
            key_file = str(secret.key_file("key_file_env", conn.base_dir, "the service-account JSON key"))
        elif settings.auth.mode == "default":
            secret.sdk_paths(ADC_PATH_VARIABLES)
        opts = settings.options
        return dict(project=opts.project, auth_mode=settings.auth.mode, key_file=key_file, endpoint=opts.endpoint)

    @property
    def _scope(self) -> str:
        return _READ_SCOPE if self.publish_prefix is None else _WRITE_SCOPE

    def _credentials(self) -> tuple[Any, str | None]:
        """google-auth credentials for the mode, and the project they imply."""
        if self.auth_mode == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials(), self.project
        if self.auth_mode == "service_account":
            from google.oauth2 import service_account

            creds = service_account.Credentials.from_service_account_file(self.key_file, scopes=[self._scope])
            # A self-signed JWT, as object_store sends on the data plane: no round trip to the token endpoint.
            creds = creds.with_always_use_jwt_access(True)
            return creds, self.project or creds.project_id
        import google.auth

        creds, project = google.auth.default(scopes=[self._scope])
        return creds, self.project or project

    def get_client(self) -> Any:
        """google-cloud-storage with the mode's credentials and, for emulators, the endpoint override."""
        return self.sdk_client

    def _new_client(self, *, for_test: bool) -> Any:
        # One client serves the test too: its calls pass retry=None themselves.
        try:
            creds, project = self._credentials()
        except Exception as exc:  # DefaultCredentialsError, malformed key file
            raise ConnectionMisconfigured(
                f"connection '{self.connection}': no usable GCS credentials ({scrub(str(exc))}); "
                + self._credentials_remedy()
            ) from None
        client_options = {"api_endpoint": self.endpoint} if self.endpoint else None
        return storage.Client(project=project or "bucket-sync", credentials=creds, client_options=client_options)

    def _store_parts(self) -> StoreParts:
        from obstore.store import GCSStore

        config: dict[str, Any] = {"base_url": self.endpoint.rstrip("/")} if self.endpoint else {}
        provider = None
        if self.auth_mode == "anonymous":
            config["skip_signature"] = True
        elif self.auth_mode == "service_account":
            config["service_account"] = self.key_file
        else:
            # google-auth understands every ADC flavour (user, impersonated, external account, metadata);
            # object_store's own chain does not, and the provider refreshes tokens as they expire.
            from obstore.auth.google import GoogleCredentialProvider

            provider = GoogleCredentialProvider(self._credentials()[0])
        return StoreParts(GCSStore, config, self.endpoint, provider)

    @property
    def _timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts for google-cloud-storage requests."""
        return (min(self.timeout_s, CONNECT_TIMEOUT_S), self.timeout_s)

    def _list(self, prefix: str, page_size: int, token: str | None) -> Pages:
        blobs = self.sdk_client.list_blobs(
            self.bucket, prefix=prefix or None, page_size=page_size, page_token=token,
            timeout=self._timeout, retry=_retry(LISTING_RETRY_WINDOW_S),
        )  # fmt: skip
        for page in blobs.pages:
            yield [_row(blob) for blob in page], blobs.next_page_token

    def _head(self, key: str) -> dict[str, Any] | None:
        # The JSON API's object resource is what the listing pages hold, so the row is built the same way.
        blob = self.sdk_client.bucket(self.bucket).get_blob(key, timeout=self._timeout, retry=_retry(RETRY_WINDOW_S))
        return None if blob is None else _row(blob)

    def _listing_failed(self, prefix: str) -> str:
        return f"gs://{self.bucket}/{prefix} failed after retrying for up to {LISTING_RETRY_WINDOW_S:.0f} s"

    def _served_matches(self, etag: str, meta: Any) -> bool:
        served = (meta.get("e_tag") or "").strip('"')
        if served and served == etag.strip('"'):
            return True
        listed_generation = _generation_from_json_etag(etag)
        return listed_generation is not None and str(listed_generation) == str(meta.get("version"))

    def _sdk_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """Pinned to the generation whose etag was checked."""
        blob = self.sdk_client.bucket(self.bucket).get_blob(key, timeout=self._timeout, retry=_retry(RETRY_WINDOW_S))
        if blob is None:
            raise gone(key)
        if etag and blob.etag != etag:
            raise changed(key)
        return blob.download_as_bytes(
            start=start, end=end - 1, if_generation_match=blob.generation,
            timeout=self._timeout, retry=_retry(RETRY_WINDOW_S),
        )  # fmt: skip

    def _read_failure(self, exc: Exception) -> Literal["gone", "changed"] | None:
        if isinstance(exc, gexc.NotFound):
            return "gone"
        return "changed" if isinstance(exc, gexc.PreconditionFailed) else None

    def _put(self, key: str, data: bytes, expected: ObjectVersion | None, *, probe: bool = False) -> ObjectVersion:
        """Through the JSON API (the SDK), with `ifGenerationMatch`: 0 for "only if absent", else the generation
        written last. obstore writes through the XML API, which the GCS emulator does not serve, and the JSON API
        answers a failed precondition and a missing permission as plainly (412, 403)."""
        if expected is not None and not expected.version:
            raise WriteConflict(f"'{key}': no generation was recorded for it, so no write can be conditional on it")
        generation = 0 if expected is None else int(expected.version or 0)
        blob = self.sdk_client.bucket(self.bucket).blob(key)
        blob.upload_from_string(
            data, content_type="application/jsonl", if_generation_match=generation,
            timeout=self._timeout, retry=None if probe else _retry(RETRY_WINDOW_S),
        )  # fmt: skip
        return ObjectVersion(etag=blob.etag, version=str(blob.generation))

    def _get_whole(self, key: str) -> tuple[bytes, ObjectVersion] | None:
        blob = self.sdk_client.bucket(self.bucket).get_blob(key, timeout=self._timeout, retry=_retry(RETRY_WINDOW_S))
        if blob is None:
            return None
        try:
            data = blob.download_as_bytes(
                if_generation_match=blob.generation, timeout=self._timeout, retry=_retry(RETRY_WINDOW_S)
            )
        except gexc.NotFound:
            return None
        except gexc.PreconditionFailed:
            return self._get_whole(key)  # replaced between the two requests: read the newer version
        return data, ObjectVersion(etag=blob.etag, version=str(blob.generation))

    def _write_failure(self, exc: Exception) -> Literal["conflict", "denied"] | None:
        if isinstance(exc, gexc.PreconditionFailed):
            return "conflict"
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized | auth_exc.RefreshError):
            return "denied"
        return super()._write_failure(exc)

    def _cors_permission(self) -> str:
        return (
            f"grant the principal storage.buckets.get on gs://{self.bucket} to read it (e.g. a custom role, or "
            "roles/storage.legacyBucketReader); a sync does not need it"
        )

    def _cors_rules(self) -> list[CorsRule]:
        bucket = self.sdk_client.get_bucket(self.bucket, timeout=self._timeout, retry=_retry(RETRY_WINDOW_S))
        # GCS has one header list, `responseHeader`: the preflight allows the request headers it names.
        return [
            CorsRule(
                origins=tuple(rule.get("origin", ())),
                methods=tuple(rule.get("method", ())),
                headers=tuple(rule.get("responseHeader", ())),
                exposed=tuple(rule.get("responseHeader", ())),
                max_age_s=rule.get("maxAgeSeconds"),
            )
            for rule in bucket.cors or []
        ]

    def _cors_denied(self, exc: Exception) -> bool:
        return isinstance(exc, gexc.Forbidden | gexc.Unauthorized)

    def _write_remedy(self, key: str) -> str:
        return (
            f"grant the principal storage.objects.create on gs://{self.bucket}/{key}, and storage.objects.delete, "
            "which replacing it after the first publish takes (roles/storage.objectUser with an IAM condition "
            f"resource.name.startsWith('projects/_/buckets/{self.bucket}/objects/{self.publish_prefix or ''}') and "
            "resource.name.endsWith('.jsonl')); ADC users also need the devstorage.read_write scope"
        )

    def _probe(self) -> bool:
        items = list(self.sdk_client.list_blobs(self.bucket, max_results=1, timeout=(5, 15), retry=None))
        if items:
            items[0].download_as_bytes(start=0, end=0, timeout=(5, 15), retry=None)
        return bool(items)

    def _verdict(self, exc: Exception) -> Verdict | None:
        where = self.endpoint or "storage.googleapis.com"
        if isinstance(exc, gexc.NotFound):
            return (
                ConnectionStatus.NOT_FOUND,
                f"bucket '{self.bucket}' does not exist at {where}: {exc.message}",
                "check `bucket` (GCS bucket names are global; options.endpoint for emulators)",
            )
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
            return (
                ConnectionStatus.FORBIDDEN,
                f"the credentials cannot list or read bucket '{self.bucket}' ({exc.code}: {exc.message})",
                "grant the principal roles/storage.objectViewer on the bucket (or a custom role with "
                "storage.objects.list and storage.objects.get)",
            )
        if isinstance(exc, auth_exc.RefreshError):
            return (
                ConnectionStatus.FORBIDDEN,
                f"Google rejected the credentials: {exc}",
                "the key or login was revoked or expired: issue a new key for the service account and point "
                "the variable named by auth.key_file_env at it (or re-run gcloud auth application-default login)",
            )
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            return ConnectionStatus.MISCONFIGURED, f"no GCS credentials: {exc}", self._credentials_remedy()
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | auth_exc.TransportError):
            return (
                ConnectionStatus.UNREACHABLE,
                f"no answer from {where}: {type(exc).__name__}",
                "check options.endpoint, and that this machine can reach it (proxy, firewall, DNS)",
            )
        if isinstance(exc, gexc.GoogleAPIError):
            return ConnectionStatus.MISCONFIGURED, f"GCS answered: {exc}", "check the connection settings"
        return None
