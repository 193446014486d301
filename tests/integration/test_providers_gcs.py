"""GCS against fake-gcs-server: exact listing, ranged reads, change detection, and the auth modes it can serve.

fake-gcs-server checks no credentials, so FORBIDDEN cannot be provoked here (see test_connection_status.py for the
statuses it can produce). It also ignores If-Match, which is why GCSBucket checks reads against response headers:
the ObjectChanged test below exercises exactly that path.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from resources.bucket import LISTING_SCHEMA, Bucket, ConnectionMisconfigured, ObjectChanged, ObjectGone
from resources.gcs_bucket import GCSBucket, _generation_from_json_etag
from resources.providers import open_bucket, validate_provider_settings
from tests.integration.buckets import ODD_KEYS as SHARED_ODD_KEYS
from tests.integration.buckets import odd_body
from tests.servers import Server

pytestmark = pytest.mark.integration

ODD_KEYS = (*SHARED_ODD_KEYS, "dots/../escape.jpg", "./dot-lead.jpg")


@pytest.fixture(scope="module")
def gcs_bucket_name(gcs_admin: Any) -> str:
    name = f"media-{uuid.uuid4().hex[:8]}"
    bucket = gcs_admin.create_bucket(name)
    for key in ODD_KEYS:
        bucket.blob(key).upload_from_string(odd_body(key))
    return name


@pytest.fixture(scope="module")
def scratch_bucket(gcs_admin: Any) -> str:
    """For tests that overwrite and delete, so the odd-keys bucket stays exactly as listed."""
    name = f"scratch-{uuid.uuid4().hex[:8]}"
    gcs_admin.create_bucket(name)
    return name


def listing(bucket: Bucket, prefix: str = "", page_size: int = 1000) -> list[dict[str, Any]]:
    batches = list(bucket.iter_listing(prefix, page_size=page_size))
    assert all(b.schema == LISTING_SCHEMA for b in batches)
    return pa.Table.from_batches(batches, schema=LISTING_SCHEMA).to_pylist()


def test_listing_returns_every_key_exactly_with_size_md5_and_generation(
    fake_gcs: Server, gcs_bucket_name: str, gcs_connection: Any
):
    bucket = open_bucket(gcs_connection("gcs-list", gcs_bucket_name, fake_gcs.endpoint))
    rows = listing(bucket, page_size=3)  # several pages
    by_key = {r["key"]: r for r in rows}
    assert sorted(by_key) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        row = by_key[key]
        assert row["size"] == len(odd_body(key))
        assert row["content_md5"] == hashlib.md5(odd_body(key)).hexdigest()
        assert row["etag"] and row["version"] and row["version"].isdigit()
        assert row["last_modified"] is not None


def test_listing_under_a_prefix(fake_gcs: Server, gcs_bucket_name: str, gcs_connection: Any):
    bucket = open_bucket(gcs_connection("gcs-prefix", gcs_bucket_name, fake_gcs.endpoint))
    assert [r["key"] for r in listing(bucket, "with space/")] == ["with space/photo one.jpg"]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_read_range_returns_the_exact_bytes(fake_gcs: Server, gcs_bucket_name: str, gcs_connection: Any, key: str):
    bucket = open_bucket(gcs_connection("gcs-read", gcs_bucket_name, fake_gcs.endpoint))
    etag = {r["key"]: r["etag"] for r in listing(bucket)}[key]
    assert bucket.read_range(key, 3, 700, etag=etag) == odd_body(key)[3:700]
    assert bucket.read_range(key, 0, 4) == b"HEAD"


@pytest.mark.parametrize("key", ["deleted.jpg", "deleted//odd.jpg"])
def test_deleted_key_raises_object_gone(
    fake_gcs: Server, scratch_bucket: str, gcs_connection: Any, gcs_admin: Any, key: str
):
    admin = gcs_admin.bucket(scratch_bucket)
    admin.blob(key).upload_from_string(b"x" * 100)
    bucket = open_bucket(gcs_connection("gcs-gone", scratch_bucket, fake_gcs.endpoint))
    etag = {r["key"]: r["etag"] for r in listing(bucket)}[key]
    admin.blob(key).delete()
    with pytest.raises(ObjectGone, match="no longer exists"):
        bucket.read_range(key, 0, 10, etag=etag)


@pytest.mark.parametrize("key", ["changed.jpg", "changed//odd.jpg"])
def test_overwritten_key_raises_object_changed(
    fake_gcs: Server, scratch_bucket: str, gcs_connection: Any, gcs_admin: Any, key: str
):
    admin = gcs_admin.bucket(scratch_bucket)
    admin.blob(key).upload_from_string(b"first version " * 10)
    bucket = open_bucket(gcs_connection("gcs-changed", scratch_bucket, fake_gcs.endpoint))
    etag = {r["key"]: r["etag"] for r in listing(bucket)}[key]
    assert bucket.read_range(key, 0, 5, etag=etag) == b"first"
    admin.blob(key).upload_from_string(b"second version " * 10)
    with pytest.raises(ObjectChanged, match="overwritten"):
        bucket.read_range(key, 0, 5, etag=etag)
    with pytest.raises(ObjectChanged):
        bucket.read_range(key, 0, 5, etag="not-the-etag")


def test_json_api_etag_generation_is_decoded():
    """Real GCS JSON etags encode the generation (protobuf field 1); the read check relies on it."""
    generation = 1_712_345_678_901_234

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    etag = base64.b64encode(b"\x08" + varint(generation) + b"\x10\x01").decode()
    assert _generation_from_json_etag(etag) == generation
    assert _generation_from_json_etag("not base64!") is None


def test_service_account_mode_reads_through_both_clients(
    fake_gcs: Server,
    gcs_bucket_name: str,
    gcs_connection: Any,
    service_account_file: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    key_file = service_account_file
    monkeypatch.setenv("TEST_GCS_KEY_FILE", str(key_file))
    conn = gcs_connection(
        "gcs-sa",
        gcs_bucket_name,
        fake_gcs.endpoint,
        auth={"mode": "service_account", "key_file_env": "TEST_GCS_KEY_FILE"},
    )
    assert validate_provider_settings(conn) is None
    bucket = open_bucket(conn)
    assert isinstance(bucket, GCSBucket) and bucket.key_file == str(key_file)
    assert bucket.test().ok
    assert len(listing(bucket)) >= len(ODD_KEYS)
    assert bucket.read_range("plain.jpg", 0, 4) == b"HEAD"  # obstore, signed with the key
    assert bucket.read_range("folder/", 0, 4) == b"HEAD"  # the SDK, signed with the key


def test_service_account_mode_with_a_missing_file_is_misconfigured(
    fake_gcs: Server, gcs_connection: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("TEST_GCS_KEY_FILE", str(tmp_path / "absent.json"))
    conn = gcs_connection(
        "gcs-sa-missing",
        "any-bucket",
        fake_gcs.endpoint,
        auth={"mode": "service_account", "key_file_env": "TEST_GCS_KEY_FILE"},
    )
    with pytest.raises(ConnectionMisconfigured, match="TEST_GCS_KEY_FILE"):
        open_bucket(conn)


def test_catalog_validation_of_gcs_settings(gcs_connection: Any):
    def problem(**kw: Any) -> str | None:
        return validate_provider_settings(gcs_connection("gcs-cat", kw.pop("bucket", "ok-bucket"), "http://x", **kw))

    assert problem() is None
    assert problem(bucket="Bad_Bucket") == (
        "field 'bucket': GCS bucket name 'Bad_Bucket' may only hold lowercase letters, digits, '-', '_' and '.'"
    )
    assert problem(region="eu") == "field 'options.region': unknown field; remove it or check its spelling"
    bad_mode = validate_provider_settings(gcs_connection("gcs-cat", "ok-bucket", "http://x", auth={"mode": "keys"}))
    assert bad_mode and bad_mode.startswith("field 'auth': unknown auth mode")
    no_var = validate_provider_settings(
        gcs_connection("gcs-cat", "ok-bucket", "http://x", auth={"mode": "service_account"})
    )
    assert no_var == "field 'auth.key_file_env': Field required"
