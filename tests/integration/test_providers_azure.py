"""Azure Blob against Azurite: exact listing, ranged reads, change detection, and every auth mode Azurite serves.

Azurite (like Azure) cannot store keys with '.' or '..' segments through the SDK (the signed path and the served
path disagree), so those are left out of the odd keys here; every other odd key is stored and read back exactly.
Service principal and default credential need Entra ID, which Azurite does not emulate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import pyarrow as pa
import pytest
from azure.storage.blob import ContainerSasPermissions, ContentSettings, PublicAccess, generate_container_sas

from resources.azure_bucket import AzureBucket
from resources.bucket import LISTING_SCHEMA, Bucket, ObjectChanged, ObjectGone
from resources.providers import open_bucket, validate_provider_settings
from tests.integration.buckets import ODD_KEYS as SHARED_ODD_KEYS
from tests.integration.buckets import odd_body
from tests.servers import Server

pytestmark = pytest.mark.integration

ODD_KEYS = SHARED_ODD_KEYS


@pytest.fixture(scope="module")
def container(azure_admin: Any) -> str:
    name = f"media-{uuid.uuid4().hex[:8]}"
    client = azure_admin.create_container(name)
    for key in ODD_KEYS:
        data = odd_body(key)
        # Azure states Content-MD5 when the uploader sets it (the portal and azcopy do); the listing carries it.
        client.upload_blob(key, data, content_settings=ContentSettings(content_md5=hashlib.md5(data).digest()))
    return name


@pytest.fixture(scope="module")
def scratch_container(azure_admin: Any) -> str:
    """For tests that overwrite and delete, so the odd-keys container stays exactly as listed."""
    name = f"scratch-{uuid.uuid4().hex[:8]}"
    azure_admin.create_container(name)
    return name


@pytest.fixture(scope="module")
def public_container(azure_admin: Any) -> str:
    name = f"public-{uuid.uuid4().hex[:8]}"
    client = azure_admin.create_container(name, public_access=PublicAccess.Container)
    client.upload_blob("open.jpg", odd_body("open.jpg"))
    return name


def sas_for(server: Server, container: str, **permissions: bool) -> str:
    return generate_container_sas(
        server.extra["account"],
        container,
        account_key=server.extra["key"],
        permission=ContainerSasPermissions(**permissions),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )


def listing(bucket: Bucket, prefix: str = "", page_size: int = 1000) -> list[dict[str, Any]]:
    batches = list(bucket.iter_listing(prefix, page_size=page_size))
    assert all(b.schema == LISTING_SCHEMA for b in batches)
    return pa.Table.from_batches(batches, schema=LISTING_SCHEMA).to_pylist()


@pytest.fixture
def key_auth(monkeypatch: pytest.MonkeyPatch, azurite: Server) -> dict[str, str]:
    monkeypatch.setenv("TEST_AZURE_KEY", azurite.extra["key"])
    return {"mode": "account_key", "account_key_env": "TEST_AZURE_KEY"}


def test_listing_returns_every_key_exactly_with_size_and_md5(
    azurite: Server, container: str, azure_connection: Any, key_auth: dict[str, str]
):
    bucket = open_bucket(azure_connection("az-list", container, azurite, key_auth))
    rows = listing(bucket, page_size=3)  # several pages
    by_key = {r["key"]: r for r in rows}
    assert sorted(by_key) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert by_key[key]["size"] == len(odd_body(key))
        assert by_key[key]["content_md5"] == hashlib.md5(odd_body(key)).hexdigest()
        assert by_key[key]["etag"] and by_key[key]["last_modified"] is not None
    assert [r["key"] for r in listing(bucket, "with space/")] == ["with space/photo one.jpg"]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_read_range_returns_the_exact_bytes(
    azurite: Server, container: str, azure_connection: Any, key_auth: dict[str, str], key: str
):
    bucket = open_bucket(azure_connection("az-read", container, azurite, key_auth))
    etag = {r["key"]: r["etag"] for r in listing(bucket)}[key]
    assert bucket.read_range(key, 3, 700, etag=etag) == odd_body(key)[3:700]
    assert bucket.read_range(key, 0, 4) == b"HEAD"


@pytest.mark.parametrize("key", ["deleted.jpg", "deleted//odd.jpg"])
def test_deleted_key_raises_object_gone(
    azurite: Server, scratch_container: str, azure_connection: Any, azure_admin: Any, key_auth: dict[str, str], key: str
):
    admin = azure_admin.get_container_client(scratch_container)
    admin.upload_blob(key, b"x" * 100, overwrite=True)
    bucket = open_bucket(azure_connection("az-gone", scratch_container, azurite, key_auth))
    etag = {r["key"]: r["etag"] for r in listing(bucket)}[key]
    admin.delete_blob(key)
    with pytest.raises(ObjectGone, match="no longer exists"):
        bucket.read_range(key, 0, 10, etag=etag)


@pytest.mark.parametrize("key", ["changed.jpg", "changed//odd.jpg"])
def test_overwritten_key_raises_object_changed(
    azurite: Server, scratch_container: str, azure_connection: Any, azure_admin: Any, key_auth: dict[str, str], key: str
):
    admin = azure_admin.get_container_client(scratch_container)
    admin.upload_blob(key, b"first version " * 10, overwrite=True)
    bucket = open_bucket(azure_connection("az-changed", scratch_container, azurite, key_auth))
    etag = {r["key"]: r["etag"] for r in listing(bucket)}[key]
    assert bucket.read_range(key, 0, 5, etag=etag) == b"first"
    admin.upload_blob(key, b"second version " * 10, overwrite=True)
    with pytest.raises(ObjectChanged, match="overwritten"):
        bucket.read_range(key, 0, 5, etag=etag)


def auth_modes(azurite: Server, container: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    """Every mode Azurite can serve, each with its secret in an environment variable."""
    account, key, endpoint = azurite.extra["account"], azurite.extra["key"], azurite.extra["blob_endpoint"]
    monkeypatch.setenv("TEST_AZURE_KEY", key)
    monkeypatch.setenv("TEST_AZURE_SAS", sas_for(azurite, container, read=True, list=True))
    monkeypatch.setenv("TEST_AZURE_SAS_Q", "?" + sas_for(azurite, container, read=True, list=True))
    monkeypatch.setenv(
        "TEST_AZURE_CS",
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={endpoint};",
    )
    monkeypatch.setenv(
        "TEST_AZURE_CS_SAS",
        f"BlobEndpoint={endpoint};SharedAccessSignature={sas_for(azurite, container, read=True, list=True)}",
    )
    return {
        "account_key": {"mode": "account_key", "account_key_env": "TEST_AZURE_KEY"},
        "sas": {"mode": "sas", "sas_token_env": "TEST_AZURE_SAS"},
        "sas_with_question_mark": {"mode": "sas", "sas_token_env": "TEST_AZURE_SAS_Q"},
        "connection_string": {"mode": "connection_string", "connection_string_env": "TEST_AZURE_CS"},
        "connection_string_sas": {"mode": "connection_string", "connection_string_env": "TEST_AZURE_CS_SAS"},
    }


@pytest.mark.parametrize(
    "mode", ["account_key", "sas", "sas_with_question_mark", "connection_string", "connection_string_sas"]
)
def test_auth_modes_list_and_read(
    azurite: Server, container: str, azure_connection: Any, monkeypatch: pytest.MonkeyPatch, mode: str
):
    auth = auth_modes(azurite, container, monkeypatch)[mode]
    conn = azure_connection(f"az-{mode.replace('_', '-')}", container, azurite, auth)
    assert validate_provider_settings(conn) is None
    bucket = open_bucket(conn)
    assert isinstance(bucket, AzureBucket)
    result = bucket.test()
    assert result.ok, result
    assert sorted(r["key"] for r in listing(bucket)) == sorted(ODD_KEYS)
    assert bucket.read_range("plain.jpg", 0, 4) == b"HEAD"  # obstore
    assert bucket.read_range("double//slash.jpg", 0, 4) == b"HEAD"  # the SDK


def test_anonymous_mode_on_a_public_container(azurite: Server, public_container: str, azure_connection: Any):
    bucket = open_bucket(azure_connection("az-anon", public_container, azurite, {"mode": "anonymous"}))
    assert bucket.test().ok
    assert [r["key"] for r in listing(bucket)] == ["open.jpg"]
    assert bucket.read_range("open.jpg", 0, 4) == b"HEAD"


def test_catalog_validation_of_azure_settings(azurite: Server, azure_connection: Any):
    def problem(container: str = "media", **changes: Any) -> str | None:
        conn = azure_connection("az-cat", container, azurite, {"mode": "sas", "sas_token_env": "X"})
        return validate_provider_settings(conn.model_copy(update=changes))

    assert problem() is None
    assert problem("$web") is None
    assert problem("Media") == (
        "field 'bucket': Azure container name 'Media' may only hold lowercase letters, digits and '-'"
    )
    assert problem(options={"account": "Dev_Account"}) == (
        "field 'options.account': Azure storage account name 'Dev_Account' may only hold lowercase letters and digits"
    )
    assert problem(options={}) == "field 'options.account': Field required"
    assert problem(auth={"mode": "sas"}) == "field 'auth.sas_token_env': Field required"
    assert problem(auth={"sas_token_env": "X"}) == (
        "field 'auth.mode': missing; say which auth mode this connection uses"
    )
