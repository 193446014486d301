"""S3 and S3-compatible stores (MinIO, Backblaze B2, Cloudflare R2) as a bucket connection.

Built on dagster-aws's `S3Resource`, which holds the configuration and serves boto3 for the control plane
and for listing (exact keys, see resources/bucket.py); ranged reads go through obstore, which releases the GIL
and runs many requests concurrently at a fraction of boto3's CPU per request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import boto3
import pyarrow as pa
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from resources.bucket import (
    CONNECT_TIMEOUT_S,
    MAX_RETRIES,
    REQUEST_TIMEOUT_S,
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
    obstore_read,
    obstore_retry_config,
)
from resources.catalog import Connection
from resources.secrets import SecretError, check_sdk_path_variables, resolve_env, scrub

_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')

#: Path variables botocore reads on its own (shared config and credentials, web identity token).
AWS_PATH_VARIABLES = ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE")


class S3Options(StrictModel):
    region: str = "us-east-1"
    endpoint: str | None = Field(None, description="custom endpoint for S3-compatible stores and emulators")
    path_style: bool = Field(False, description="path-style addressing (MinIO, some B2/R2 set-ups, emulators)")
    verify_tls: bool = True
    concurrency: int = Field(32, ge=1, le=256)


class S3KeysAuth(StrictModel):
    mode: Literal["keys"]
    access_key_id_env: str
    secret_access_key_env: str
    session_token_env: str | None = None


class S3AnonymousAuth(StrictModel):
    mode: Literal["anonymous"]


class S3DefaultAuth(StrictModel):
    """boto3's default chain: environment, shared config, container or instance role."""

    mode: Literal["default"] = "default"


class S3ProfileAuth(StrictModel):
    """A named profile from the shared AWS config (~/.aws/config, AWS_CONFIG_FILE): keys, SSO, role chains."""

    mode: Literal["profile"]
    profile: str


class S3AssumeRoleAuth(StrictModel):
    """Assume `role_arn` (cross-account access, e.g. Dataloop's set-up) from source credentials.

    The source is boto3's default chain, or keys read from the environment variables named here. The assumed
    credentials are refreshed before they expire, for boto3 and for obstore alike.
    """

    mode: Literal["assume_role"]
    role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    external_id: str | None = None
    session_name: str | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    session_token_env: str | None = None


S3Auth = Annotated[
    S3KeysAuth | S3AnonymousAuth | S3DefaultAuth | S3ProfileAuth | S3AssumeRoleAuth,
    Field(discriminator="mode"),
]


class S3Settings(ProviderSettings):
    options: S3Options = S3Options()
    auth: S3Auth = S3DefaultAuth()


def s3_bucket_name_problem(name: str | None) -> str | None:
    """The S3 bucket naming rule `name` breaks, if any (AWS general purpose bucket rules)."""
    if not name:
        return "an S3 connection needs `bucket`"
    if not 3 <= len(name) <= 63:
        return f"S3 bucket name '{name}' must be 3 to 63 characters long"
    if not re.fullmatch(r"[a-z0-9.-]+", name):
        return f"S3 bucket name '{name}' may only hold lowercase letters, digits, '.' and '-'"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return f"S3 bucket name '{name}' must start and end with a letter or digit"
    if ".." in name:
        return f"S3 bucket name '{name}' must not contain two adjacent periods"
    try:
        ipaddress.IPv4Address(name)
        return f"S3 bucket name '{name}' must not be formatted as an IP address"
    except ValueError:
        pass
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        return f"S3 bucket name '{name}' uses a prefix or suffix reserved by AWS"
    return None


def validate_s3(conn: Connection) -> str | None:
    return s3_bucket_name_problem(conn.bucket) and f"field 'bucket': {s3_bucket_name_problem(conn.bucket)}"


class S3Bucket(PagedListing, S3Resource):
    """One S3 bucket connection. Secret fields hold resolved values and are never logged or echoed."""

    connection: str
    bucket: str
    path_style: bool = False
    timeout_s: float = REQUEST_TIMEOUT_S
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    _store: Any = PrivateAttr(default=None)
    _client: Any = PrivateAttr(default=None)

    @classmethod
    def from_connection(cls, conn: Connection) -> S3Bucket:
        settings = S3Settings.model_validate({"options": conn.options, "auth": conn.auth})
        opts, auth = settings.options, settings.auth
        values: dict[str, Any] = {}
        try:
            if isinstance(auth, S3AssumeRoleAuth):
                values.update(
                    role_arn=auth.role_arn,
                    external_id=auth.external_id,
                    role_session_name=auth.session_name or f"bucket-sync-{conn.name}",
                )
                if bool(auth.access_key_id_env) != bool(auth.secret_access_key_env):
                    raise ConnectionMisconfigured(
                        f"connection '{conn.name}': auth.access_key_id_env and auth.secret_access_key_env go "
                        "together; give both (source keys) or neither (boto3's default chain)"
                    )
            if isinstance(auth, S3DefaultAuth | S3ProfileAuth | S3AssumeRoleAuth):
                check_sdk_path_variables(AWS_PATH_VARIABLES, connection=conn.name, field=f"auth.mode {auth.mode}")
            if isinstance(auth, S3ProfileAuth):
                values["profile_name"] = auth.profile
                _check_profile(conn.name, auth.profile)
            if isinstance(auth, S3KeysAuth | S3AssumeRoleAuth) and auth.access_key_id_env:
                values["aws_access_key_id"] = resolve_env(
                    auth.access_key_id_env, connection=conn.name, field="auth.access_key_id_env"
                )
                values["aws_secret_access_key"] = resolve_env(
                    auth.secret_access_key_env or "", connection=conn.name, field="auth.secret_access_key_env"
                )
                if auth.session_token_env:
                    values["aws_session_token"] = resolve_env(
                        auth.session_token_env, connection=conn.name, field="auth.session_token_env"
                    )
        except SecretError as exc:
            raise ConnectionMisconfigured(str(exc)) from None
        return cls(
            connection=conn.name,
            bucket=conn.bucket or "",
            region_name=opts.region,
            endpoint_url=opts.endpoint,
            path_style=opts.path_style,
            verify=opts.verify_tls,
            use_unsigned_session=isinstance(auth, S3AnonymousAuth),
            max_attempts=MAX_RETRIES + 1,
            **values,
        )

    @property
    def connection_name(self) -> str:
        return self.connection

    @property
    def provider(self) -> str:
        return "s3"

    def _session(self) -> boto3.session.Session:
        """The boto3 session whose credentials every call uses; for assume_role, one that refreshes itself."""
        if not self.role_arn:
            return boto3.session.Session(profile_name=self.profile_name)
        return _assumed_role_session(
            source=boto3.session.Session(
                profile_name=self.profile_name,
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                aws_session_token=self.aws_session_token,
                region_name=self.region_name,
            ),
            role_arn=self.role_arn,
            session_name=self.role_session_name or f"bucket-sync-{self.connection}",
            external_id=self.external_id,
            sts_endpoint=self.endpoint_url,
            region=self.region_name or "us-east-1",
        )

    def get_client(self) -> Any:
        """boto3 with short timeouts and the addressing style S3-compatible stores need."""
        if self._client is None:
            self._client = self._make_client(self.max_attempts)
        return self._client

    def _make_client(self, max_attempts: int) -> Any:
        """A boto3 S3 client; `max_attempts=1` for a connection test that must answer within seconds."""
        session = self._session()
        # With a role, the key fields are the *source* credentials: the session holds the assumed ones.
        keys: dict[str, Any] = {}
        if not self.role_arn:
            keys.update(
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                aws_session_token=self.aws_session_token,
            )
        # "standard" retries connection errors, read timeouts, 500/502/503/504 and throttling codes (SlowDown,
        # 429 Too Many Requests) with exponential backoff and jitter. botocore's `max_attempts` key counts retries
        # only; `total_max_attempts` counts the first try too, which is what `max_attempts` means here.
        config = BotoConfig(
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=min(self.timeout_s, CONNECT_TIMEOUT_S),
            read_timeout=self.timeout_s,
            s3={"addressing_style": "path" if self.path_style else "auto"},
            signature_version=UNSIGNED if self.use_unsigned_session else None,
        )
        return session.client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            config=config,
            **keys,
        )

    def _obstore(self) -> Any:
        if self._store is None:
            from obstore.store import S3Store

            config: dict[str, Any] = {"region": self.region_name or "us-east-1"}
            provider = None
            if self.endpoint_url:
                config["endpoint"] = self.endpoint_url
            config["virtual_hosted_style_request"] = not self.path_style and not self.endpoint_url
            if self.use_unsigned_session:
                config["skip_signature"] = True
            elif self.role_arn or self.profile_name:
                # obstore asks the boto3 session for credentials whenever they near expiry, so assumed-role
                # and SSO credentials keep working through a long sync.
                from obstore.auth.boto3 import Boto3CredentialProvider

                provider = Boto3CredentialProvider(self._session())
            elif self.aws_access_key_id:
                config["access_key_id"] = self.aws_access_key_id
                config["secret_access_key"] = self.aws_secret_access_key
                if self.aws_session_token:
                    config["token"] = self.aws_session_token
            self._store = S3Store(
                self.bucket,
                config=config,
                client_options=obstore_client_options(self.endpoint_url, self.timeout_s),  # type: ignore[arg-type]
                retry_config=obstore_retry_config(),  # type: ignore[arg-type]
                credential_provider=provider,
            )
        return self._store

    def _pages(self, prefix: str, page_size: int, token: str | None) -> Iterator[tuple[pa.RecordBatch, str | None]]:
        client = self.get_client()
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
            if token:
                params["ContinuationToken"] = token
            try:
                page = client.list_objects_v2(**params)
            except (ClientError, BotoCoreError) as exc:
                raise ListingFailed(
                    f"connection '{self.connection}': listing s3://{self.bucket}/{prefix} failed after "
                    f"{self.max_attempts} attempts: {scrub(str(exc))}"
                ) from None
            rows = []
            for item in page.get("Contents", []):
                etag = item.get("ETag")
                md5 = _MD5_ETAG.match(etag or "")
                rows.append(
                    {
                        "key": item["Key"],
                        "size": item["Size"],
                        "etag": etag,
                        "last_modified": item.get("LastModified"),
                        "content_md5": md5.group(1) if md5 else None,
                    }
                )
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            yield batch_from_rows(rows), token
            if token is None:
                return

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        if obstore_addressable(key):
            return obstore_read(self._obstore(), key, start, end, etag)
        # Keys obstore would rewrite (see resources/bucket.py) go through boto3, which sends them as stored.
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Range": f"bytes={start}-{max(start, end - 1)}",
        }
        if etag:
            params["IfMatch"] = etag
        try:
            return self.get_client().get_object(**params)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)") from None
            if code in ("PreconditionFailed", "412"):
                raise ObjectChanged(f"'{key}' was overwritten after it was listed (its etag changed)") from None
            raise

    def test(self) -> ConnectionTest:
        """List one key under the bucket, then read one byte of it: exactly the permissions a sync needs."""

        def result(status: ConnectionStatus, detail: str, remedy: str = "") -> ConnectionTest:
            return ConnectionTest(self.connection, "s3", status, scrub(detail), remedy)

        try:
            client = self._make_client(max_attempts=1)
            page = client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            items = page.get("Contents", [])
            if items:
                client.get_object(Bucket=self.bucket, Key=items[0]["Key"], Range="bytes=0-0")
        except ConnectionMisconfigured as exc:
            return result(ConnectionStatus.MISCONFIGURED, str(exc), "check the auth settings of this connection")
        except (NoCredentialsError, ProfileNotFound) as exc:
            return result(
                ConnectionStatus.MISCONFIGURED,
                f"no AWS credentials: {exc}",
                "set auth.mode keys (with the key variables), profile, or assume_role, or configure boto3's "
                "default chain (AWS_PROFILE, instance or container role)",
            )
        except EndpointConnectionError as exc:
            return result(
                ConnectionStatus.UNREACHABLE,
                f"no answer from {self.endpoint_url or 'the S3 endpoint'}: {exc}",
                "check options.endpoint and options.region, and that this machine can reach the endpoint",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404"):
                return result(
                    ConnectionStatus.NOT_FOUND,
                    f"bucket '{self.bucket}' does not exist at this endpoint",
                    "check `bucket` (and options.endpoint / options.region for S3-compatible stores)",
                )
            if self.role_arn and exc.operation_name == "AssumeRole":
                return result(
                    ConnectionStatus.FORBIDDEN,
                    f"the source credentials cannot assume role {self.role_arn} ({code})",
                    "allow sts:AssumeRole on the role for the source identity, and check the role's trust "
                    "policy (principal and sts:ExternalId condition) against auth.external_id",
                )
            if code in (
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "403",
                "AllAccessDisabled",
                "InvalidClientTokenId",
            ):
                return result(
                    ConnectionStatus.FORBIDDEN,
                    f"the credentials cannot list or read bucket '{self.bucket}' ({code})",
                    f"grant s3:ListBucket on arn:aws:s3:::{self.bucket} and s3:GetObject on "
                    f"arn:aws:s3:::{self.bucket}/*, and check the key id and secret variables",
                )
            return result(ConnectionStatus.MISCONFIGURED, f"S3 answered {code}: {exc}", "check the connection settings")
        except BotoCoreError as exc:
            return result(
                ConnectionStatus.UNREACHABLE,
                f"S3 request failed: {exc}",
                "check options.endpoint, the network path, and TLS settings",
            )
        detail = f"listed bucket '{self.bucket}'" + (" and read one object" if items else " (it is empty)")
        return result(ConnectionStatus.AVAILABLE, detail)


def _check_profile(connection: str, profile: str) -> None:
    """Fail at load time, naming the profile, rather than at the first request with botocore's wording."""
    import botocore.session

    if profile not in botocore.session.Session().available_profiles:
        raise ConnectionMisconfigured(
            f"connection '{connection}': AWS profile '{profile}' (auth.profile) is not in the shared "
            f"AWS config; run `aws configure --profile {profile}` or point AWS_CONFIG_FILE at the file "
            "that defines it"
        )


def _assumed_role_session(
    *,
    source: boto3.session.Session,
    role_arn: str,
    session_name: str,
    external_id: str | None,
    sts_endpoint: str | None,
    region: str,
) -> boto3.session.Session:
    """A session holding `role_arn`'s credentials, assumed lazily and re-assumed before they expire.

    botocore's own assume-role machinery (the fetcher and deferred refreshable credentials that back
    `role_arn` in ~/.aws/config), built from the source session so the source may be explicit keys. STS goes
    to `sts_endpoint` when one is set, as S3-compatible stores with an STS API (MinIO) and emulators expect.
    """
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
    from botocore.session import Session as BotocoreSession

    source_credentials = source.get_credentials()
    if source_credentials is None:
        raise ConnectionMisconfigured(
            f"no source credentials to assume {role_arn} from: set auth.access_key_id_env and "
            "auth.secret_access_key_env, or configure boto3's default chain (AWS_PROFILE, instance role)"
        )

    def client_creator(service: str, **kwargs: Any) -> Any:
        return source.client(
            service,
            region_name=region,
            endpoint_url=sts_endpoint,
            config=BotoConfig(connect_timeout=5, retries={"total_max_attempts": 2, "mode": "standard"}),
            **kwargs,
        )

    extra_args: dict[str, Any] = {"RoleSessionName": session_name}
    if external_id:
        extra_args["ExternalId"] = external_id
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=client_creator,
        source_credentials=source_credentials,
        role_arn=role_arn,
        extra_args=extra_args,
    )
    botocore_session = BotocoreSession()
    botocore_session._credentials = DeferredRefreshableCredentials(  # the documented-in-practice hook
        method="assume-role", refresh_using=fetcher.fetch_credentials
    )
    return boto3.session.Session(botocore_session=botocore_session, region_name=region)
