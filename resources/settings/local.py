"""Settings of the local provider: a folder that acts as the bucket; there is nothing to authenticate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from resources.settings.base import ProviderSettings, StrictModel

if TYPE_CHECKING:
    from resources.bucket import Bucket
    from resources.catalog import Connection


class LocalOptions(StrictModel):
    concurrency: int = 8


class LocalSettings(ProviderSettings):
    provider: Literal["local"]
    root: str | None = Field(None, validate_default=True)
    options: LocalOptions = LocalOptions()
    auth: dict[str, str] = {}

    @field_validator("root")
    @classmethod
    def _root(cls, v: str | None) -> str | None:
        if not v:
            raise ValueError("a local connection needs `root`, the folder that acts as the bucket")
        return v

    def open(self, conn: Connection) -> Bucket:
        from resources.local_bucket import LocalBucket

        root = Path(self.root or ".")
        return LocalBucket(
            connection=conn.name,
            root=str(root if root.is_absolute() else Path(conn.base_dir) / root),
            publish_prefix=conn.prefix if conn.publish_manifest else None,
        )
