"""Azure Blob Storage as a bucket connection (one container of one storage account).

Built on dagster-azure's `AzureBlobStorageResource` (`account_url` + `credential`), which serves
azure-storage-blob for the control plane and for listing (exact keys, see resources/bucket.py); ranged reads
go through obstore's AzureStore. dagster-azure's credential union covers key, SAS, default and anonymous;
connection strings and service principals are resolved here into the same shape (a connection string becomes
an account URL plus a key or SAS). Settings: resources/settings/azure.py.

SAS tokens travel in request URLs, so every text that leaves this module goes through `scrub`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError
from azure.storage.blob import BlobServiceClient, ExponentialRetry
from dagster_azure.blob import (
    AzureBlobStorageAnonymousCredential,
    AzureBlobStorageDefaultCredential,
    AzureBlobStorageKeyCredential,
    AzureBlobStorageResource,
    AzureBlobStorageSASTokenCredential,
)

from media.cors import CorsRule
from resources.bucket import (
    CONNECT_TIMEOUT_S,
    MAX_RETRIES,
    REQUEST_TIMEOUT_S,
    RETRY_INITIAL_BACKOFF_S,
    RETRY_MAX_BACKOFF_S,
    ConnectionMisconfigured,
    ConnectionStatus,
    ConnectionTest,
)
from resources.catalog import Connection
from resources.provider_base import CloudBucket, Pages, Secrets, StoreParts, Verdict
from resources.secrets import remember
from resources.settings.azure import AUTH_REMEDY, ROLE_REMEDY, AzureSettings

#: Azurite's published development account (not a secret: it is in Microsoft's documentation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#: Path variables azure-identity's DefaultAzureCredential reads on its own (client certificate, workload identity).
AZURE_PATH_VARIABLES = ("AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE")


#: The loggers of the Azure SDK that narrate a failed credential chain: DefaultAzureCredential logs, at WARNING, a
#: dozen lines naming every credential it tried, which with no logging configured go straight to stderr.
SDK_LOGGERS = ("azure.identity", "azure.core")


@contextmanager
def quiet_sdk_logs() -> Iterator[None]:
    """Silence the Azure SDK's loggers for a connection test: its verdict says the same in one line, with the fix."""
    loggers = [logging.getLogger(name) for name in SDK_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def parse_connection_string(text: str) -> dict[str, str]:
    """`Key=Value;...` as a dict. Values hold '=' (base64 keys, SAS tokens): split on the first one only."""
    parts: dict[str, str] = {}
    for item in text.strip().split(";"):
        if "=" in item:
            key, _, value = item.partition("=")
            parts[key.strip()] = value.strip()
    return parts


class ThrottleAwareRetry(ExponentialRetry):
    """azure-storage-blob's ExponentialRetry with short backoff, also retrying 429 Too Many Requests.

    The storage SDK's default waits 15 s, then 18 s, then 24 s, and its status check retries 408 and 5xx but not
    429, which Azure front ends and proxies do send. Backoff here: ~0.2 s, 2.2 s, 4.2 s, 8.2 s, ... (jittered),
    like the other providers'. A 429 gets the same number of retries on top, re-entering the storage policy,
    so a throttling burst followed by a 503 is still bounded by 2 x `retries` attempts.
    """

    def __init__(self, retries: int) -> None:
        super().__init__(
            initial_backoff=RETRY_INITIAL_BACKOFF_S,  # type: ignore[arg-type]  # typed int, used as float
            increment_base=2,
            retry_total=retries,
            random_jitter_range=RETRY_INITIAL_BACKOFF_S,  # type: ignore[arg-type]
        )
        self.throttle_retries = retries

    def send(self, request: Any) -> Any:
        response = super().send(request)
        for attempt in range(1, self.throttle_retries + 1):
            if response.http_response.status_code != 429:
                break
            time.sleep(min(RETRY_MAX_BACKOFF_S, RETRY_INITIAL_BACKOFF_S * 2**attempt))
            response = super().send(request)
        return response


class AzureBucket(CloudBucket, AzureBlobStorageResource):
    """One container connection. Secret fields hold resolved values and are never logged or echoed."""

    provider: ClassVar[str] = "azure"
    nouns: ClassVar[tuple[str, str]] = ("container", "blob")
    auth_remedy: ClassVar[dict[str, str]] = AUTH_REMEDY
    sdk_errors: ClassVar[tuple[type[Exception], ...]] = (AzureError,)
    connection: str
    bucket: str
    publish_prefix: str | None = None
    account: str
    auth_mode: Literal["account_key", "sas", "connection_string", "service_principal", "default", "anonymous"] = (
        "default"
    )
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    timeout_s: float = REQUEST_TIMEOUT_S

    @classmethod
    def _fields(cls, conn: Connection, settings: AzureSettings, secret: Secrets) -> dict[str, Any]:
        opts, auth = settings.options, settings.auth
        fields: dict[str, Any] = {"account": opts.account, "auth_mode": auth.mode}
        account_url = (opts.endpoint or f"https://{opts.account}.blob.core.windows.net").rstrip("/")
        if auth.mode == "account_key":
            credential: Any = AzureBlobStorageKeyCredential(key=secret("account_key_env"))
        elif auth.mode == "sas":
            credential = AzureBlobStorageSASTokenCredential(token=secret("sas_token_env").lstrip("?"))
        elif auth.mode == "connection_string":
            parts = parse_connection_string(secret("connection_string_env"))
            account_url, credential = _from_connection_string(conn, settings, parts, account_url)
        elif auth.mode == "service_principal":
            fields.update(tenant_id=auth.tenant_id, client_id=auth.client_id)
            fields["client_secret"] = secret("client_secret_env")
            # Built in `_raw_credential`: dagster-azure's credential union has no service principal.
            credential = AzureBlobStorageDefaultCredential()
        elif auth.mode == "anonymous":
            credential = AzureBlobStorageAnonymousCredential()
        else:
            secret.sdk_paths(AZURE_PATH_VARIABLES)
            credential = AzureBlobStorageDefaultCredential()
        return {**fields, "account_url": account_url, "credential": credential}

    @property
    def _key(self) -> str | None:
        return self.credential.key if isinstance(self.credential, AzureBlobStorageKeyCredential) else None

    @property
    def _sas(self) -> str | None:
        return self.credential.token if isinstance(self.credential, AzureBlobStorageSASTokenCredential) else None

    def _raw_credential(self) -> Any:
        """What azure-storage-blob takes: the named key pair (an IP-style Azurite URL hides the account name
        from the SDK), the SAS, a service-principal or default token credential, or None."""
        if self._key:
            return {"account_name": self.account, "account_key": self._key}
        if self.auth_mode == "service_principal":
            from azure.identity import ClientSecretCredential

            return ClientSecretCredential(self.tenant_id, self.client_id, self.client_secret)
        return super()._raw_credential()

    def sdk_credential(self) -> Any:
        """The credential azure-storage-blob and azure-storage-queue both take: the bucket-event reader's Storage
        Queue client (resources/event_queues.py) authenticates with it, exactly as the container is read."""
        return self._raw_credential()

    def _new_client(self, *, for_test: bool) -> Any:
        """A BlobServiceClient with short timeouts and our retry policy; none for a test that must answer fast."""
        return BlobServiceClient(
            account_url=self.account_url,
            credential=self._raw_credential(),
            connection_timeout=CONNECT_TIMEOUT_S,
            read_timeout=self.timeout_s,
            retry_policy=ThrottleAwareRetry(0 if for_test else MAX_RETRIES),
        )

    def _store_parts(self) -> StoreParts:
        from obstore.store import AzureStore

        config: dict[str, Any] = {"account_name": self.account, "endpoint": self.account_url}
        provider = None
        if self._key:
            config["account_key"] = self._key
        elif self._sas:
            config["sas_key"] = self._sas
        elif self.auth_mode == "service_principal":
            config.update(tenant_id=self.tenant_id, client_id=self.client_id, client_secret=self.client_secret)
        elif self.auth_mode == "anonymous":
            config["skip_signature"] = True
        else:
            from azure.identity import DefaultAzureCredential
            from obstore.auth.azure import AzureCredentialProvider

            provider = AzureCredentialProvider(DefaultAzureCredential(**self.credential.kwargs))
        return StoreParts(AzureStore, config, self.account_url, provider)

    def _list(self, prefix: str, page_size: int, token: str | None) -> Pages:
        container = self.sdk_client.get_container_client(self.bucket)
        pages = container.list_blobs(name_starts_with=prefix or None, results_per_page=page_size).by_page(
            continuation_token=token
        )
        for page in pages:
            yield [_row(blob.name, blob) for blob in page], pages.continuation_token or None

    def _head(self, key: str) -> dict[str, Any] | None:
        # Get Blob Properties answers with the same BlobProperties a listing page holds; a missing blob raises
        # ResourceNotFoundError, which `_read_failure` maps to None.
        return _row(key, self.sdk_client.get_blob_client(self.bucket, key).get_blob_properties())

    def _listing_failed(self, prefix: str) -> str:
        return f"container '{self.bucket}' under '{prefix}' failed after {MAX_RETRIES} retries"

    def _sdk_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """Keys obstore would rewrite (`a//b`, a leading or trailing '/') go through the SDK, as stored."""
        kwargs: dict[str, Any] = {"offset": start, "length": end - start}
        if etag:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        return self.sdk_client.get_blob_client(self.bucket, key).download_blob(**kwargs).readall()

    def _read_failure(self, exc: Exception) -> Literal["gone", "changed"] | None:
        if isinstance(exc, ResourceNotFoundError):
            return "gone"
        return "changed" if isinstance(exc, ResourceModifiedError) else None

    def _exists(self, key: str) -> bool:
        try:
            self.sdk_client.get_blob_client(self.bucket, key).get_blob_properties()
        except ResourceNotFoundError:
            return False
        except AzureError:
            pass
        return True

    def _probe(self) -> bool:
        with self._new_client(for_test=True) as service:
            container = service.get_container_client(self.bucket)
            items = list(next(container.list_blobs(results_per_page=1).by_page()))[:1]
            if items:
                container.get_blob_client(items[0].name).download_blob(offset=0, length=1).readall()
        return bool(items)

    def _cors_permission(self) -> str:
        return (
            "Azure keeps CORS per account: grant the identity Microsoft.Storage/storageAccounts/blobServices/read "
            f"on account '{self.account}' (e.g. the Reader role), or use an account SAS with service-level read "
            "(ss=b srt=s sp=r); a sync does not need it"
        )

    def _cors_rules(self) -> list[CorsRule]:
        rules = self.sdk_client.get_service_properties().get("cors") or []
        return [
            CorsRule(
                origins=_azure_list(rule.allowed_origins),
                methods=_azure_list(rule.allowed_methods),
                headers=_azure_list(rule.allowed_headers),
                exposed=_azure_list(rule.exposed_headers),
                max_age_s=rule.max_age_in_seconds,
            )
            for rule in rules
        ]

    def _cors_denied(self, exc: Exception) -> bool:
        return isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) in (401, 403)

    def _write_remedy(self, key: str) -> str:
        return (
            f"assign the identity 'Storage Blob Data Contributor' on container '{self.bucket}', narrowed by a "
            f"role-assignment condition to blob path '{key}' (with video manifests, '{self.publish_prefix or ''}"
            "*.jsonl'), or use a SAS with Read, List, Create and Write (sp=rlcw) on the container"
        )

    def test(self) -> ConnectionTest:
        with quiet_sdk_logs():
            return super().test()

    def _verdict(self, exc: Exception) -> Verdict | None:
        if isinstance(exc, CredentialUnavailableError):
            return ConnectionStatus.MISCONFIGURED, f"no Azure credential available: {exc}", self._credentials_remedy()
        if isinstance(exc, ClientAuthenticationError) and exc.response is None:
            # No token was obtained, so storage was never asked: a credential chain that found nothing to sign in
            # with (DefaultAzureCredential raises this, not CredentialUnavailableError) is a setting to fix, as GCS
            # says of missing application default credentials; FORBIDDEN is for what the storage account refuses.
            said = (exc.message or str(exc)).strip().splitlines() or [type(exc).__name__]  # the rest lists them all
            return (
                ConnectionStatus.MISCONFIGURED,
                f"no Azure credential available for auth.mode {self.auth_mode}: {said[0]}",
                self._credentials_remedy(),
            )
        if isinstance(exc, ResourceNotFoundError):
            code = getattr(exc, "error_code", None) or "not found"
            return (
                ConnectionStatus.NOT_FOUND,
                f"container '{self.bucket}' does not exist in account '{self.account}' ({code})",
                "check `bucket` (the container) and options.account",
            )
        if isinstance(exc, ClientAuthenticationError | HttpResponseError):
            code = getattr(exc, "error_code", None) or getattr(exc, "status_code", None) or type(exc).__name__
            if getattr(exc, "status_code", None) in (401, 403) or isinstance(exc, ClientAuthenticationError):
                return (
                    ConnectionStatus.FORBIDDEN,
                    f"the credentials cannot list or read container '{self.bucket}' ({code})",
                    f"{ROLE_REMEDY}; {self._credentials_remedy()}",
                )
            return ConnectionStatus.MISCONFIGURED, f"Azure answered {code}: {exc.message}", "check the settings"
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return (
                ConnectionStatus.UNREACHABLE,
                f"no answer from {self.account_url}: {type(exc).__name__}",
                "check options.account (the account URL must resolve) and options.endpoint, and that this "
                "machine can reach it (proxy, firewall, private endpoint DNS)",
            )
        return None


def _row(key: str, blob: Any) -> dict[str, Any]:
    """One listing row from BlobProperties, as a listing page or Get Blob Properties returns them.

    The etag is stripped of quotes: the listing's XML gives it bare, the properties' header in quotes, and a row
    must describe an object alike whichever request read it."""
    md5 = blob.content_settings.content_md5 if blob.content_settings else None
    return {
        "key": key,
        "size": blob.size,
        "etag": blob.etag.strip('"') if blob.etag else blob.etag,
        "last_modified": blob.last_modified,
        "version": blob.version_id,
        "content_md5": bytes(md5).hex() if md5 else None,
    }


def _azure_list(value: Any) -> tuple[str, ...]:
    """The SDK gives a rule's origins, methods and headers as one comma-separated string when read back."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(item.strip() for item in items if item.strip())


def _from_connection_string(
    conn: Connection, settings: AzureSettings, parts: dict[str, str], account_url: str
) -> tuple[str, Any]:
    """The account URL and credential a connection string names. Explicit options.endpoint wins."""
    var = getattr(settings.auth, "connection_string_env", "")
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        parts = {"AccountName": AZURITE_ACCOUNT, "AccountKey": AZURITE_KEY,
                 "BlobEndpoint": f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"}  # fmt: skip
    for value in (parts.get("AccountKey"), parts.get("SharedAccessSignature")):
        if value:
            remember(value)
    if not settings.options.endpoint:
        if parts.get("BlobEndpoint"):
            account_url = parts["BlobEndpoint"].rstrip("/")
        elif parts.get("AccountName"):
            scheme = parts.get("DefaultEndpointsProtocol", "https")
            suffix = parts.get("EndpointSuffix", "core.windows.net")
            account_url = f"{scheme}://{parts['AccountName']}.blob.{suffix}"
    if parts.get("AccountName") and parts["AccountName"] != settings.options.account:
        raise ConnectionMisconfigured(
            f"connection '{conn.name}': the connection string in {var} is for account '{parts['AccountName']}' "
            f"but options.account is '{settings.options.account}'; make them agree"
        )
    if parts.get("AccountKey"):
        return account_url, AzureBlobStorageKeyCredential(key=parts["AccountKey"])
    if parts.get("SharedAccessSignature"):
        return account_url, AzureBlobStorageSASTokenCredential(token=parts["SharedAccessSignature"].lstrip("?"))
    raise ConnectionMisconfigured(
        f"connection '{conn.name}': the connection string in {var} (named by auth.connection_string_env) holds "
        "neither AccountKey nor SharedAccessSignature; copy the full string from the portal's Access keys or "
        "Shared access signature page"
    )
