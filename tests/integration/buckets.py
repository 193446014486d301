"""Test buckets, one per provider, behind one small interface so the sync suite runs unchanged on each.

A test bucket can produce its catalog entry (with secrets as environment variable names, set by the fixture), put and
delete objects, and rename one (copy then delete, as every object store does it).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Protocol

import boto3
import pytest


class BucketUnderTest(Protocol):
    provider: str

    def entry(self, name: str, **fields: Any) -> dict[str, Any]: ...

    def put(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def folder_marker(self, key: str) -> None: ...


def move(bucket: BucketUnderTest, read: dict[str, bytes], old: str, new: str) -> None:
    """Rename the way object stores do: write the same bytes under the new key, then delete the old one."""
    bucket.put(new, read[old])
    bucket.delete(old)


class LocalTestBucket:
    provider = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def entry(self, name: str, **fields: Any) -> dict[str, Any]:
        return {"name": name, "provider": "local", "root": str(self.root), **fields}

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete(self, key: str) -> None:
        (self.root / key).unlink()

    def move(self, old: str, new: str) -> None:
        """A real rename keeps the inode, which the local provider's etag reflects."""
        target = self.root / new
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self.root / old, target)

    def folder_marker(self, key: str) -> None:
        (self.root / key).mkdir(parents=True, exist_ok=True)


class S3TestBucket:
    provider = "s3"
    KEY_ENV, SECRET_ENV = "BUCKET_SYNC_TEST_S3_KEY", "BUCKET_SYNC_TEST_S3_SECRET"
    KEY, SECRET = "testing-key-id", "testing-secret-value-s3"

    def __init__(self, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.endpoint = endpoint
        self.bucket = f"bs-{uuid.uuid4().hex[:12]}"
        monkeypatch.setenv(self.KEY_ENV, self.KEY)
        monkeypatch.setenv(self.SECRET_ENV, self.SECRET)
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=self.KEY,
            aws_secret_access_key=self.SECRET,
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=self.bucket)

    def entry(self, name: str, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "s3",
            "bucket": self.bucket,
            "options": {"endpoint": self.endpoint, "region": "us-east-1", "path_style": True},
            "auth": {"mode": "keys", "access_key_id_env": self.KEY_ENV, "secret_access_key_env": self.SECRET_ENV},
            **fields,
        }

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def folder_marker(self, key: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key.rstrip("/") + "/", Body=b"")


def unique_name(prefix: str = "conn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class GCSTestBucket:
    """A bucket on fake-gcs-server, read anonymously through the endpoint override (the emulator checks no auth)."""

    provider = "gcs"

    def __init__(self, endpoint: str, admin: Any) -> None:
        self.endpoint = endpoint
        self.bucket = admin.create_bucket(f"bs-{uuid.uuid4().hex[:12]}")

    def entry(self, name: str, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "gcs",
            "bucket": self.bucket.name,
            "options": {"endpoint": self.endpoint, "project": "test"},
            "auth": {"mode": "anonymous"},
            **fields,
        }

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data)

    def delete(self, key: str) -> None:
        self.bucket.blob(key).delete()

    def folder_marker(self, key: str) -> None:
        self.put(key.rstrip("/") + "/", b"")


class AzureTestBucket:
    """A container on Azurite, read with the development account's key from an environment variable."""

    provider = "azure"
    KEY_ENV = "BUCKET_SYNC_TEST_AZURE_KEY"

    def __init__(self, server: Any, admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server = server
        self.container = admin.create_container(f"bs-{uuid.uuid4().hex[:12]}")
        monkeypatch.setenv(self.KEY_ENV, server.extra["key"])

    def entry(self, name: str, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "azure",
            "bucket": self.container.container_name,
            "options": {"account": self.server.extra["account"], "endpoint": self.server.extra["blob_endpoint"]},
            "auth": {"mode": "account_key", "account_key_env": self.KEY_ENV},
            **fields,
        }

    def put(self, key: str, data: bytes) -> None:
        self.container.upload_blob(key, data, overwrite=True)

    def delete(self, key: str) -> None:
        self.container.delete_blob(key)

    def folder_marker(self, key: str) -> None:
        self.put(key.rstrip("/") + "/", b"")


#: Keys that break naive clients and that every cloud provider stores as given: spaces, unicode, percent signs,
#: query/fragment characters, an empty segment, a leading slash and a folder marker. (`.`/`..` segments are not
#: here: Azure's SDK normalises them away; the GCS and S3 tests add them.)
ODD_KEYS: tuple[str, ...] = (
    "plain.jpg",
    "with space/photo one.jpg",
    "unicodé/ñandú 😀.jpg",
    "percent%20literal.jpg",
    "q?x#y.jpg",
    "double//slash.jpg",
    "/leading.jpg",
    "folder/",
)


def odd_body(key: str) -> bytes:
    """Content unique to each key, so a read of the wrong object cannot pass for the right one."""
    return b"HEAD" + key.encode() + bytes(range(256)) * 4
