"""Azure Blob Storage as a bucket connection (one container of one storage account).

Built on dagster-azure's `AzureBlobStorageResource` (`account_url` + `credential`), which serves
azure-storage-blob for the control plane and for listing (exact keys, see resources/bucket.py); ranged reads
go through obstore's AzureStore. dagster-azure's credential union covers key, SAS, default and anonymous;
connection strings and service principals are resolved here into the same shape (a connection string becomes
an account URL plus a key or SAS).

SAS tokens travel in request URLs, so every text that leaves this module goes through `scrub`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import pyarrow as pa
from dagster_azure.blob import (
    AzureBlobStorageAnonymousCredential,
    AzureBlobStorageDefaultCredential,
    AzureBlobStorageKeyCredential,
    AzureBlobStorageResource,
    AzureBlobStorageSASTokenCredential,
)
from pydantic import Field, PrivateAttr

from resources.bucket import (
    CONNECT_TIMEOUT_S,
    MAX_RETRIES,
    REQUEST_TIMEOUT_S,
    RETRY_INITIAL_BACKOFF_S,
    RETRY_MAX_BACKOFF_S,
    BucketError,
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
from resources.secrets import SecretError, check_sdk_path_variables, remember, resolve_env, scrub

#: Azurite's published development account (not a secret: it is in Microsoft's documentation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#: Path variables azure-identity's DefaultAzureCredential reads on its own (client certificate, workload identity).
AZURE_PATH_VARIABLES = ("AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE")

_ROLE_REMEDY = (
    "assign the identity the 'Storage Blob Data Reader' role on the container (or the account), "
    "or use a SAS with Read and List permissions (sp=rl)"
)


class AzureOptions(StrictModel):
    account: str = Field(description="storage account name")
    endpoint: str | None = Field(
        None, description="blob endpoint override, e.g. Azurite: http://127.0.0.1:10000/devstoreaccount1"
    )
    concurrency: int = Field(32, ge=1, le=256)


class AzureAccountKeyAuth(StrictModel):
    mode: Literal["account_key"]
    account_key_env: str


class AzureSasAuth(StrictModel):
    mode: Literal["sas"]
    sas_token_env: str


class AzureConnectionStringAuth(StrictModel):
    mode: Literal["connection_string"]
    connection_string_env: str


class AzureServicePrincipalAuth(StrictModel):
    mode: Literal["service_principal"]
    tenant_id: str
    client_id: str
    client_secret_env: str


class AzureDefaultAuth(StrictModel):
    """azure-identity's DefaultAzureCredential: environment, workload identity, managed identity, az login."""

    mode: Literal["default"] = "default"


class AzureAnonymousAuth(StrictModel):
    """Unsigned requests, for containers with public (blob or container) access."""

    mode: Literal["anonymous"]


AzureAuth = Annotated[
    AzureAccountKeyAuth
    | AzureSasAuth
    | AzureConnectionStringAuth
    | AzureServicePrincipalAuth
    | AzureDefaultAuth
    | AzureAnonymousAuth,
    Field(discriminator="mode"),
]


class AzureSettings(ProviderSettings):
    options: AzureOptions
    auth: AzureAuth = AzureDefaultAuth()


def azure_account_name_problem(name: str | None) -> str | None:
    """The storage account naming rule `name` breaks, if any."""
    if not name:
        return "an Azure connection needs `options.account`, the storage account name"
    if not 3 <= len(name) <= 24:
        return f"Azure storage account name '{name}' must be 3 to 24 characters long"
    if not re.fullmatch(r"[a-z0-9]+", name):
        return f"Azure storage account name '{name}' may only hold lowercase letters and digits"
    return None


def azure_container_name_problem(name: str | None) -> str | None:
    """The container naming rule `name` breaks, if any. `$root` and `$web` are valid reserved names."""
    if not name:
        return "an Azure connection needs `bucket`, the container name"
    if name in ("$root", "$web"):
        return None
    if not 3 <= len(name) <= 63:
        return f"Azure container name '{name}' must be 3 to 63 characters long"
    if not re.fullmatch(r"[a-z0-9-]+", name):
        return f"Azure container name '{name}' may only hold lowercase letters, digits and '-'"
    if not name[0].isalnum():
        return f"Azure container name '{name}' must start with a letter or digit"
    if name.endswith("-"):
        return f"Azure container name '{name}' must not end with '-'"
    if "--" in name:
        return f"Azure container name '{name}' must not contain consecutive '-' characters"
    return None


def validate_azure(conn: Connection) -> str | None:
    account = conn.options.get("account")
    problem = azure_account_name_problem(account if isinstance(account, str) else None)
    if problem:
        return f"field 'options.account': {problem}"
    problem = azure_container_name_problem(conn.bucket)
    return problem and f"field 'bucket': {problem}"


def parse_connection_string(text: str) -> dict[str, str]:
    """`Key=Value;...` as a dict. Values hold '=' (base64 keys, SAS tokens): split on the first one only."""
    parts: dict[str, str] = {}
    for item in text.strip().split(";"):
        if "=" in item:
            key, _, value = item.partition("=")
            parts[key.strip()] = value.strip()
    return parts


def _throttle_aware_retry(retries: int) -> Any:
    """azure-storage-blob's ExponentialRetry with short backoff, also retrying 429 Too Many Requests.

    The storage SDK's default waits 15 s, then 18 s, then 24 s, and its status check retries 408 and 5xx but not
    429, which Azure front ends and proxies do send. Backoff here: ~0.2 s, 2.2 s, 4.2 s, 8.2 s, ... (jittered),
    like the other providers'. A 429 gets the same number of retries on top, re-entering the storage policy,
    so a throttling burst followed by a 503 is still bounded by 2 x `retries` attempts.
    """
    import time

    from azure.storage.blob import ExponentialRetry

    class ThrottleAwareRetry(ExponentialRetry):
        def send(self, request: Any) -> Any:
            response = super().send(request)
            for attempt in range(1, retries + 1):
                if response.http_response.status_code != 429:
                    break
                time.sleep(min(RETRY_MAX_BACKOFF_S, RETRY_INITIAL_BACKOFF_S * 2**attempt))
                response = super().send(request)
            return response

    return ThrottleAwareRetry(
        initial_backoff=RETRY_INITIAL_BACKOFF_S,  # type: ignore[arg-type]  # typed int, used as float
        increment_base=2,
        retry_total=retries,
        random_jitter_range=RETRY_INITIAL_BACKOFF_S,  # type: ignore[arg-type]
    )


class AzureBucket(PagedListing, AzureBlobStorageResource):
    """One container connection. Secret fields hold resolved values and are never logged or echoed."""

    connection: str
    container: str
    account: str
    auth_mode: Literal["account_key", "sas", "connection_string", "service_principal", "default", "anonymous"] = (
        "default"
    )
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    timeout_s: float = REQUEST_TIMEOUT_S
    _store: Any = PrivateAttr(default=None)

    @classmethod
    def from_connection(cls, conn: Connection) -> AzureBucket:
        settings = AzureSettings.model_validate({"options": conn.options, "auth": conn.auth})
        opts, auth = settings.options, settings.auth
        account_url = (opts.endpoint or f"https://{opts.account}.blob.core.windows.net").rstrip("/")
        extra: dict[str, Any] = {}
        credential: Any
        try:
            if isinstance(auth, AzureAccountKeyAuth):
                key = resolve_env(auth.account_key_env, connection=conn.name, field="auth.account_key_env")
                credential = AzureBlobStorageKeyCredential(key=key)
            elif isinstance(auth, AzureSasAuth):
                sas = resolve_env(auth.sas_token_env, connection=conn.name, field="auth.sas_token_env").lstrip("?")
                credential = AzureBlobStorageSASTokenCredential(token=sas)
            elif isinstance(auth, AzureConnectionStringAuth):
                text = resolve_env(auth.connection_string_env, connection=conn.name, field="auth.connection_string_env")
                account_url, credential = cls._from_connection_string(conn, auth, text, opts, account_url)
            elif isinstance(auth, AzureServicePrincipalAuth):
                extra["client_secret"] = resolve_env(
                    auth.client_secret_env, connection=conn.name, field="auth.client_secret_env"
                )
                extra["tenant_id"], extra["client_id"] = auth.tenant_id, auth.client_id
                # Built in `_raw_credential`: dagster-azure's credential union has no service principal.
                credential = AzureBlobStorageDefaultCredential()
            elif isinstance(auth, AzureAnonymousAuth):
                credential = AzureBlobStorageAnonymousCredential()
            else:
                check_sdk_path_variables(AZURE_PATH_VARIABLES, connection=conn.name, field="auth.mode default")
                credential = AzureBlobStorageDefaultCredential()
        except SecretError as exc:
            raise ConnectionMisconfigured(str(exc)) from None
        return cls(
            connection=conn.name,
            container=conn.bucket or "",
            account=opts.account,
            account_url=account_url,
            credential=credential,
            auth_mode=auth.mode,
            **extra,
        )

    @staticmethod
    def _from_connection_string(
        conn: Connection, auth: AzureConnectionStringAuth, text: str, opts: AzureOptions, account_url: str
    ) -> tuple[str, Any]:
        """The account URL and credential a connection string names. Explicit options.endpoint wins."""
        parts = parse_connection_string(text)
        if parts.get("UseDevelopmentStorage", "").lower() == "true":
            parts = {"AccountName": AZURITE_ACCOUNT, "AccountKey": AZURITE_KEY,
                     "BlobEndpoint": f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"}  # fmt: skip
        for value in (parts.get("AccountKey"), parts.get("SharedAccessSignature")):
            if value:
                remember(value)
        if not opts.endpoint:
            if parts.get("BlobEndpoint"):
                account_url = parts["BlobEndpoint"].rstrip("/")
            elif parts.get("AccountName"):
                scheme = parts.get("DefaultEndpointsProtocol", "https")
                suffix = parts.get("EndpointSuffix", "core.windows.net")
                account_url = f"{scheme}://{parts['AccountName']}.blob.{suffix}"
        if parts.get("AccountName") and parts["AccountName"] != opts.account:
            raise ConnectionMisconfigured(
                f"connection '{conn.name}': the connection string in {auth.connection_string_env} is for "
                f"account '{parts['AccountName']}' but options.account is '{opts.account}'; make them agree"
            )
        if parts.get("AccountKey"):
            return account_url, AzureBlobStorageKeyCredential(key=parts["AccountKey"])
        if parts.get("SharedAccessSignature"):
            return account_url, AzureBlobStorageSASTokenCredential(token=parts["SharedAccessSignature"].lstrip("?"))
        raise ConnectionMisconfigured(
            f"connection '{conn.name}': the connection string in {auth.connection_string_env} (named by "
            "auth.connection_string_env) holds neither AccountKey nor SharedAccessSignature; copy the full "
            "string from the portal's Access keys or Shared access signature page"
        )

    @property
    def connection_name(self) -> str:
        return self.connection

    @property
    def provider(self) -> str:
        return "azure"

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

    @contextmanager
    def get_client(self, *, retries: int = MAX_RETRIES, connect_timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
        """A BlobServiceClient with short timeouts and our retry policy; `retries=0` for a test that must answer
        fast."""
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient(
            account_url=self.account_url,
            credential=self._raw_credential(),
            connection_timeout=connect_timeout,
            read_timeout=self.timeout_s,
            retry_policy=_throttle_aware_retry(retries),
        )
        try:
            yield service
        finally:
            service.close()

    def _obstore(self) -> Any:
        if self._store is None:
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
            self._store = AzureStore(
                self.container,
                config=config,
                client_options=obstore_client_options(self.account_url, self.timeout_s),  # type: ignore[arg-type]
                retry_config=obstore_retry_config(),  # type: ignore[arg-type]
                credential_provider=provider,
            )
        return self._store

    def _pages(self, prefix: str, page_size: int, token: str | None) -> Iterator[tuple[pa.RecordBatch, str | None]]:
        from azure.core.exceptions import AzureError

        try:
            with self.get_client() as service:
                container = service.get_container_client(self.container)
                listing = container.list_blobs(name_starts_with=prefix or None, results_per_page=page_size)
                pages = listing.by_page(continuation_token=token)
                for page in pages:
                    rows = []
                    for blob in page:
                        md5 = blob.content_settings.content_md5 if blob.content_settings else None
                        rows.append(
                            {
                                "key": blob.name,
                                "size": blob.size,
                                "etag": blob.etag,
                                "last_modified": blob.last_modified,
                                "version": blob.version_id,
                                "content_md5": bytes(md5).hex() if md5 else None,
                            }
                        )
                    yield batch_from_rows(rows), pages.continuation_token or None
        except AzureError as exc:
            raise ListingFailed(
                f"connection '{self.connection}': listing container '{self.container}' under '{prefix}' "
                f"failed after {MAX_RETRIES} retries: {scrub(str(exc))}"
            ) from None

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        if obstore_addressable(key):
            return self._obstore_read(key, start, end, etag)
        return self._sdk_read(key, start, end, etag)

    def _obstore_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """obstore ranged read with If-Match; errors are scrubbed because a SAS rides in the request URL."""
        import obstore
        from obstore.exceptions import BaseError, NotFoundError, PreconditionError

        options: dict[str, Any] = {"range": (start, end)}
        if etag:
            options["if_match"] = etag
        try:
            return bytes(obstore.get(self._obstore(), key, options=options).bytes())  # type: ignore[arg-type]
        except (FileNotFoundError, NotFoundError):
            raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)") from None
        except PreconditionError:
            raise self._gone_or_changed(key) from None
        except (BaseError, OSError) as exc:
            raise BucketError(f"connection '{self.connection}': reading '{key}' failed: {scrub(str(exc))}") from None

    def _gone_or_changed(self, key: str) -> ObjectGone | ObjectChanged:
        """Which failed precondition this was: Azurite answers If-Match on a deleted blob with 412, not 404."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            with self.get_client() as service:
                service.get_blob_client(self.container, key).get_blob_properties()
        except ResourceNotFoundError:
            return ObjectGone(f"'{key}' no longer exists (deleted after it was listed)")
        except AzureError:
            pass
        return ObjectChanged(f"'{key}' was overwritten after it was listed (its etag changed)")

    def _sdk_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        """Keys obstore would rewrite (`a//b`, a leading or trailing '/') go through the SDK, as stored."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        if end <= start:
            return b""
        kwargs: dict[str, Any] = {"offset": start, "length": end - start}
        if etag:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        try:
            with self.get_client() as service:
                blob = service.get_blob_client(self.container, key)
                return blob.download_blob(**kwargs).readall()
        except ResourceNotFoundError:
            raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)") from None
        except ResourceModifiedError:
            raise self._gone_or_changed(key) from None
        except AzureError as exc:
            raise BucketError(f"connection '{self.connection}': reading '{key}' failed: {scrub(str(exc))}") from None

    def _variable_remedy(self) -> str:
        return {
            "account_key": "check the key in the variable named by auth.account_key_env (Access keys in the portal)",
            "sas": "issue a SAS with Read and List (sp=rl) on the container, valid now, into the variable "
            "named by auth.sas_token_env",
            "connection_string": "check the connection string in the variable named by auth.connection_string_env",
            "service_principal": "check auth.tenant_id, auth.client_id and the secret in the variable named "
            "by auth.client_secret_env, and " + _ROLE_REMEDY.replace("assign", "assign the app registration"),
            "default": "sign in (az login), or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
            "or run with a managed identity",
            "anonymous": "the container is not public: set its access level to Blob or Container, or use a credential",
        }[self.auth_mode]

    def test(self) -> ConnectionTest:
        """List one blob, then read one byte of it, without retries: exactly the permissions a sync needs."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        def result(status: ConnectionStatus, detail: str, remedy: str = "") -> ConnectionTest:
            return ConnectionTest(self.connection, "azure", status, scrub(detail), remedy)

        try:
            from azure.identity import CredentialUnavailableError
        except ImportError:  # pragma: no cover - azure-identity ships with dagster-azure
            CredentialUnavailableError = ClientAuthenticationError  # type: ignore[misc,assignment]

        try:
            with self.get_client(retries=0) as service:
                container = service.get_container_client(self.container)
                page = next(container.list_blobs(results_per_page=1).by_page())
                items = list(page)[:1]
                if items:
                    container.get_blob_client(items[0].name).download_blob(offset=0, length=1).readall()
        except CredentialUnavailableError as exc:
            return result(
                ConnectionStatus.MISCONFIGURED,
                f"no Azure credential available: {exc}",
                self._variable_remedy(),
            )
        except ResourceNotFoundError as exc:
            code = getattr(exc, "error_code", None) or ""
            return result(
                ConnectionStatus.NOT_FOUND,
                f"container '{self.container}' does not exist in account '{self.account}' ({code or 'not found'})",
                "check `bucket` (the container) and options.account",
            )
        except (ClientAuthenticationError, HttpResponseError) as exc:
            code = getattr(exc, "error_code", None) or getattr(exc, "status_code", None) or type(exc).__name__
            if getattr(exc, "status_code", None) in (401, 403) or isinstance(exc, ClientAuthenticationError):
                return result(
                    ConnectionStatus.FORBIDDEN,
                    f"the credentials cannot list or read container '{self.container}' ({code})",
                    f"{_ROLE_REMEDY}; {self._variable_remedy()}",
                )
            return result(ConnectionStatus.MISCONFIGURED, f"Azure answered {code}: {exc.message}", "check the settings")
        except (ServiceRequestError, ServiceResponseError) as exc:
            return result(
                ConnectionStatus.UNREACHABLE,
                f"no answer from {self.account_url}: {type(exc).__name__}",
                "check options.account (the account URL must resolve) and options.endpoint, and that this "
                "machine can reach it (proxy, firewall, private endpoint DNS)",
            )
        detail = f"listed container '{self.container}'" + (" and read one blob" if items else " (it is empty)")
        return result(ConnectionStatus.AVAILABLE, detail)
