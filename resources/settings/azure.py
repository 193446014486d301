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


#: What read access takes, in a connection test's remedy.
ROLE_REMEDY = (
    "assign the identity the 'Storage Blob Data Reader' role on the container (or the account), "
    "or use a SAS with Read and List permissions (sp=rl)"
)
#: What to fix when a mode's credentials do not work, in a connection test's remedy.
AUTH_REMEDY = {
    "account_key": "check the key in the variable named by auth.account_key_env (Access keys in the portal)",
    "sas": "issue a SAS with Read and List (sp=rl) on the container, valid now, into the variable "
    "named by auth.sas_token_env",
    "connection_string": "check the connection string in the variable named by auth.connection_string_env",
    "service_principal": "check auth.tenant_id, auth.client_id and the secret in the variable named "
    "by auth.client_secret_env, and " + ROLE_REMEDY.replace("assign", "assign the app registration"),
    "default": "sign in (az login), or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
    "or run with a managed identity",
    "anonymous": "the container is not public: set its access level to Blob or Container, or use a credential",
}


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
