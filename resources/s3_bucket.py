"""S3 and S3-compatible stores (MinIO, Backblaze B2, Cloudflare R2) as a bucket connection.

Built on dagster-aws's `S3Resource`, which holds the configuration and serves boto3 for the control plane
and for listing (exact keys, see resources/bucket.py); ranged reads go through obstore, which releases the GIL
and runs many requests concurrently at a fraction of boto3's CPU per request. Settings: resources/settings/s3.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Literal

import boto3
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, ProfileNotFound
from botocore.utils import parse_timestamp
from dagster_aws.s3 import S3Resource

from media.cors import CorsRule
from resources.bucket import (
    CONNECT_TIMEOUT_S,
    MAX_RETRIES,
    REQUEST_TIMEOUT_S,
    ConnectionMisconfigured,
    ConnectionStatus,
)
from resources.catalog import Connection
from resources.provider_base import CloudBucket, Pages, Secrets, StoreParts, Verdict
from resources.settings.s3 import S3AnonymousAuth, S3AssumeRoleAuth, S3KeysAuth, S3ProfileAuth, S3Settings

_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')

#: Path variables botocore reads on its own (shared config and credentials, web identity token).
AWS_PATH_VARIABLES = ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE")
#: Error codes that mean the credentials are known but may not list or read, or are not known at all.
_DENIED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AllAccessDisabled", "InvalidClientTokenId"}
)


class S3Bucket(CloudBucket, S3Resource):
    """One S3 bucket connection. Secret fields hold resolved values and are never logged or echoed."""

    provider: ClassVar[str] = "s3"
    sdk_errors: ClassVar[tuple[type[Exception], ...]] = (ClientError, BotoCoreError)
    connection: str
    bucket: str
    publish_prefix: str | None = None
    path_style: bool = False
    timeout_s: float = REQUEST_TIMEOUT_S
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None

    @classmethod
    def _fields(cls, conn: Connection, settings: S3Settings, secret: Secrets) -> dict[str, Any]:
        opts, auth = settings.options, settings.auth
        values: dict[str, Any] = {}
        if isinstance(auth, S3AssumeRoleAuth):
            values.update(role_arn=auth.role_arn, external_id=auth.external_id)
            values["role_session_name"] = auth.session_name or f"bucket-sync-{conn.name}"
            if bool(auth.access_key_id_env) != bool(auth.secret_access_key_env):
                raise ConnectionMisconfigured(
                    f"connection '{conn.name}': auth.access_key_id_env and auth.secret_access_key_env go "
                    "together; give both (source keys) or neither (boto3's default chain)"
                )
        if auth.mode in ("default", "profile", "assume_role"):
            secret.sdk_paths(AWS_PATH_VARIABLES)
        if isinstance(auth, S3ProfileAuth):
            values["profile_name"] = auth.profile
            _check_profile(conn.name, auth.profile)
        if isinstance(auth, S3KeysAuth | S3AssumeRoleAuth) and auth.access_key_id_env:
            values["aws_access_key_id"] = secret("access_key_id_env")
            values["aws_secret_access_key"] = secret("secret_access_key_env")
            if auth.session_token_env:
                values["aws_session_token"] = secret("session_token_env")
        return dict(
            region_name=opts.region,
            endpoint_url=opts.endpoint,
            path_style=opts.path_style,
            verify=opts.verify_tls,
            use_unsigned_session=isinstance(auth, S3AnonymousAuth),
            max_attempts=MAX_RETRIES + 1,
            **values,
        )

    def _session(self) -> boto3.session.Session:
        """The boto3 session whose credentials every call uses; for assume_role, one that refreshes itself."""
        if not self.role_arn:
            return boto3.session.Session(profile_name=self.profile_name)
        source = boto3.session.Session(
            profile_name=self.profile_name,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            region_name=self.region_name,
        )
        return _assumed_role_session(source, self.role_arn, self.role_session_name, self.external_id, self.endpoint_url)

    def get_client(self) -> Any:
        """boto3 with short timeouts and the addressing style S3-compatible stores need."""
        return self.sdk_client

    def _client_keys(self) -> dict[str, Any]:
        """The key fields a boto3 client is given: none with a role, whose session holds the assumed credentials (the
        key fields are then the *source* credentials)."""
        if self.role_arn:
            return {}
        return {
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
        }

    def _new_client(self, *, for_test: bool) -> Any:
        keys = self._client_keys()
        # "standard" retries connection errors, read timeouts, 500/502/503/504 and throttling codes (SlowDown,
        # 429 Too Many Requests) with exponential backoff and jitter. botocore's `max_attempts` key counts retries
        # only; `total_max_attempts` counts the first try too, which is what `max_attempts` means here.
        config = BotoConfig(
            retries={"total_max_attempts": 1 if for_test else self.max_attempts, "mode": "standard"},
            connect_timeout=min(self.timeout_s, CONNECT_TIMEOUT_S),
            read_timeout=self.timeout_s,
            s3={"addressing_style": "path" if self.path_style else "auto"},
            signature_version=UNSIGNED if self.use_unsigned_session else None,
        )
        session = self._session()
        # A listing page carries a LastModified per key, which botocore parses with dateutil by default: more than
        # half of the CPU a ListObjectsV2 page costs. They are ISO 8601, which the standard library parses directly.
        session._session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
        return session.client(
            "s3", region_name=self.region_name, endpoint_url=self.endpoint_url, use_ssl=self.use_ssl,
            verify=self.verify, config=config, **keys,
        )  # fmt: skip

    def service_client(self, service: str, endpoint_url: str | None, region: str | None = None) -> Any:
        """A boto3 client of another AWS service with this connection's credentials, timeouts and retries: the
        bucket-event reader's SQS client (resources/event_queues.py), so a queue authenticates as the bucket does."""
        keys = self._client_keys()
        config = BotoConfig(
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=min(self.timeout_s, CONNECT_TIMEOUT_S),
            read_timeout=self.timeout_s,
            signature_version=UNSIGNED if self.use_unsigned_session else None,
        )
        return self._session().client(
            service, region_name=region or self.region_name, endpoint_url=endpoint_url, verify=self.verify,
            config=config, **keys,
        )  # fmt: skip

    def _store_parts(self) -> StoreParts:
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
            config.update(access_key_id=self.aws_access_key_id, secret_access_key=self.aws_secret_access_key)
            if self.aws_session_token:
                config["token"] = self.aws_session_token
        return StoreParts(S3Store, config, self.endpoint_url, provider)

    def _list(self, prefix: str, page_size: int, token: str | None) -> Pages:
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
            if token:
                params["ContinuationToken"] = token
            page = self.sdk_client.list_objects_v2(**params)
            rows = [
                _row(item["Key"], item["Size"], item.get("ETag"), item.get("LastModified"))
                for item in page.get("Contents", [])
            ]
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            yield rows, token
            if token is None:
                return

    def _head(self, key: str) -> dict[str, Any] | None:
        # HeadObject carries no body, so "not found" is a bare 404 (`_read_failure` maps it to None). The version
        # id it may send is left out, as ListObjectsV2 gives none: the two must describe an object alike.
        answer = self.sdk_client.head_object(Bucket=self.bucket, Key=key)
        return _row(key, answer["ContentLength"], answer.get("ETag"), answer.get("LastModified"))

    def _listing_failed(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix} failed after {self.max_attempts} attempts"

    def _sdk_read(self, key: str, start: int, end: int, etag: str | None) -> bytes:
        # Keys obstore would rewrite (see resources/bucket.py) go through boto3, which sends them as stored.
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={start}-{end - 1}"}
        if etag:
            params["IfMatch"] = etag
        return self.sdk_client.get_object(**params)["Body"].read()

    def _read_failure(self, exc: Exception) -> Literal["gone", "changed"] | None:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        return "gone" if code in ("NoSuchKey", "404") else "changed" if code in ("PreconditionFailed", "412") else None

    def _probe(self) -> bool:
        client = self._new_client(for_test=True)
        items = client.list_objects_v2(Bucket=self.bucket, MaxKeys=1).get("Contents", [])
        if items:
            client.get_object(Bucket=self.bucket, Key=items[0]["Key"], Range="bytes=0-0")
        return bool(items)

    def _cors_permission(self) -> str:
        return f"grant s3:GetBucketCORS on arn:aws:s3:::{self.bucket} to read it (a sync does not need it)"

    def _cors_rules(self) -> list[CorsRule]:
        try:
            answer = self.sdk_client.get_bucket_cors(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchCORSConfiguration":
                return []
            raise
        return [
            CorsRule(
                origins=tuple(rule.get("AllowedOrigins", ())),
                methods=tuple(rule.get("AllowedMethods", ())),
                headers=tuple(rule.get("AllowedHeaders", ())),
                exposed=tuple(rule.get("ExposeHeaders", ())),
                max_age_s=rule.get("MaxAgeSeconds"),
            )
            for rule in answer.get("CORSRules", [])
        ]

    def _cors_denied(self, exc: Exception) -> bool:
        return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code", "") in _DENIED

    def _write_remedy(self, key: str) -> str:
        return (
            f"grant s3:PutObject on arn:aws:s3:::{self.bucket}/{key} (with video manifests, on "
            f"arn:aws:s3:::{self.bucket}/{self.publish_prefix or ''}*.jsonl); no other write is needed"
        )

    def _verdict(self, exc: Exception) -> Verdict | None:
        if isinstance(exc, NoCredentialsError | ProfileNotFound):
            return (
                ConnectionStatus.MISCONFIGURED,
                f"no AWS credentials: {exc}",
                "set auth.mode keys (with the key variables), profile, or assume_role, or configure boto3's "
                "default chain (AWS_PROFILE, instance or container role)",
            )
        if isinstance(exc, EndpointConnectionError):
            return (
                ConnectionStatus.UNREACHABLE,
                f"no answer from {self.endpoint_url or 'the S3 endpoint'}: {exc}",
                "check options.endpoint and options.region, and that this machine can reach the endpoint",
            )
        if isinstance(exc, BotoCoreError):
            return (
                ConnectionStatus.UNREACHABLE,
                f"S3 request failed: {exc}",
                "check options.endpoint, the network path, and TLS settings",
            )
        if not isinstance(exc, ClientError):
            return None
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            return (
                ConnectionStatus.NOT_FOUND,
                f"bucket '{self.bucket}' does not exist at this endpoint",
                "check `bucket` (and options.endpoint / options.region for S3-compatible stores)",
            )
        if self.role_arn and exc.operation_name == "AssumeRole":
            return (
                ConnectionStatus.FORBIDDEN,
                f"the source credentials cannot assume role {self.role_arn} ({code})",
                "allow sts:AssumeRole on the role for the source identity, and check the role's trust "
                "policy (principal and sts:ExternalId condition) against auth.external_id",
            )
        if code in _DENIED:
            return (
                ConnectionStatus.FORBIDDEN,
                f"the credentials cannot list or read bucket '{self.bucket}' ({code})",
                f"grant s3:ListBucket on arn:aws:s3:::{self.bucket} and s3:GetObject on "
                f"arn:aws:s3:::{self.bucket}/*, and check the key id and secret variables",
            )
        return ConnectionStatus.MISCONFIGURED, f"S3 answered {code}: {exc}", "check the connection settings"


def _row(key: str, size: int, etag: str | None, last_modified: datetime | None) -> dict[str, Any]:
    """One listing row, the same from ListObjectsV2 and HeadObject; a single-part etag is the content's MD5."""
    md5 = _MD5_ETAG.match(etag or "")
    return {
        "key": key,
        "size": size,
        "etag": etag,
        "last_modified": last_modified,
        "content_md5": md5.group(1) if md5 else None,
    }


def _check_profile(connection: str, profile: str) -> None:
    """Fail at load time, naming the profile, rather than at the first request with botocore's wording."""
    import botocore.session

    if profile not in botocore.session.Session().available_profiles:
        raise ConnectionMisconfigured(
            f"connection '{connection}': AWS profile '{profile}' (auth.profile) is not in the shared "
            f"AWS config; run `aws configure --profile {profile}` or point AWS_CONFIG_FILE at the file "
            "that defines it"
        )


def _timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, with ISO 8601 with an offset (what S3 listings send) parsed by the standard
    library; anything else (RFC 1123 headers, epoch numbers, no offset) goes to botocore's own parser unchanged."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return parse_timestamp(value)


def _assumed_role_session(
    source: boto3.session.Session, role_arn: str, session_name: str | None, external_id: str | None, sts: str | None
) -> boto3.session.Session:
    """A session holding `role_arn`'s credentials, assumed lazily and re-assumed before they expire.

    botocore's own assume-role machinery (the fetcher and deferred refreshable credentials that back
    `role_arn` in ~/.aws/config), built from the source session so the source may be explicit keys. STS goes
    to `sts` when an endpoint is set, as S3-compatible stores with an STS API (MinIO) and emulators expect.
    """
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
    from botocore.session import Session as BotocoreSession

    source_credentials = source.get_credentials()
    if source_credentials is None:
        raise ConnectionMisconfigured(
            f"no source credentials to assume {role_arn} from: set auth.access_key_id_env and "
            "auth.secret_access_key_env, or configure boto3's default chain (AWS_PROFILE, instance role)"
        )
    region = source.region_name or "us-east-1"
    retries = BotoConfig(connect_timeout=5, retries={"total_max_attempts": 2, "mode": "standard"})
    extra_args: dict[str, Any] = {"RoleSessionName": session_name or "bucket-sync"}
    if external_id:
        extra_args["ExternalId"] = external_id
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=lambda service, **kw: source.client(
            service, region_name=region, endpoint_url=sts, config=retries, **kw
        ),
        source_credentials=source_credentials,
        role_arn=role_arn,
        extra_args=extra_args,
    )
    botocore_session = BotocoreSession()
    botocore_session._credentials = DeferredRefreshableCredentials(  # the documented-in-practice hook
        method="assume-role", refresh_using=fetcher.fetch_credentials
    )
    return boto3.session.Session(botocore_session=botocore_session, region_name=region)
