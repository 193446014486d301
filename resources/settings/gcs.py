"""Settings of Google Cloud Storage: options, auth modes, bucket name rules."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from resources.settings.base import ProviderSettings, StrictModel, name_rule

if TYPE_CHECKING:
    from resources.bucket import Bucket
    from resources.catalog import Connection


#: What to fix when a mode's credentials do not work, in a connection test's remedy.
AUTH_REMEDY = {
    "service_account": "point the variable named by auth.key_file_env at a valid service-account JSON key",
    "default": "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS, "
    "or use auth.mode service_account",
    "anonymous": "check options.endpoint",
}


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


class GCSSettings(ProviderSettings):
    provider: Literal["gcs"]
    options: GCSOptions = GCSOptions()
    auth: GCSAuth = GCSDefaultAuth()
    bucket: Annotated[str | None, name_rule(gcs_bucket_name_problem)] = Field(None, validate_default=True)

    def open(self, conn: Connection) -> Bucket:
        from resources.gcs_bucket import GCSBucket

        return GCSBucket.open(conn, self)
