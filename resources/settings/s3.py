"""Settings of S3 and S3-compatible stores (MinIO, Backblaze B2, Cloudflare R2): options, auth modes, name rules."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from resources.settings.base import ProviderSettings, StrictModel, name_rule

if TYPE_CHECKING:
    from resources.bucket import Bucket
    from resources.catalog import Connection


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


class S3Settings(ProviderSettings):
    provider: Literal["s3"]
    options: S3Options = S3Options()
    auth: S3Auth = S3DefaultAuth()
    bucket: Annotated[str | None, name_rule(s3_bucket_name_problem)] = Field(None, validate_default=True)

    def open(self, conn: Connection) -> Bucket:
        from resources.s3_bucket import S3Bucket

        return S3Bucket.open(conn, self)
