"""Settings of Azure Blob Storage (one container of one storage account): options, auth modes, name rules."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from resources.settings.base import ProviderSettings, StrictModel, name_rule

if TYPE_CHECKING:
    from resources.bucket import Bucket
    from resources.catalog import Connection


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


class AzureOptions(StrictModel):
    account: Annotated[str, name_rule(azure_account_name_problem)] = Field(description="storage account name")
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
    provider: Literal["azure"]
    options: AzureOptions
    auth: AzureAuth = AzureDefaultAuth()
    bucket: Annotated[str | None, name_rule(azure_container_name_problem)] = Field(None, validate_default=True)

    def open(self, conn: Connection) -> Bucket:
        from resources.azure_bucket import AzureBucket

        return AzureBucket.open(conn, self)
