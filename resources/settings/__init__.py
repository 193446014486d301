"""Each provider's catalog settings, and the discriminated union on `provider` that picks one per connection."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from resources.settings.azure import AzureSettings
from resources.settings.base import ProviderSettings, StrictModel
from resources.settings.gcs import GCSSettings
from resources.settings.local import LocalSettings
from resources.settings.s3 import S3Settings

AnyProviderSettings = Annotated[
    LocalSettings | S3Settings | GCSSettings | AzureSettings, Field(discriminator="provider")
]
PROVIDER_SETTINGS: TypeAdapter[LocalSettings | S3Settings | GCSSettings | AzureSettings] = TypeAdapter(
    AnyProviderSettings
)

__all__ = ["PROVIDER_SETTINGS", "AnyProviderSettings", "ProviderSettings", "StrictModel"]
