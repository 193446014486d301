"""Publishing the manifest into the bucket (`publish_manifest`), proven at each emulator from the server's side.

A publishing sync may send exactly one kind of write: a conditional PUT of the manifest under the prefix (on GCS, the
SDK's upload with `ifGenerationMatch`), and never a DELETE. The recording proxy (tests/proxy.py) sees every request,
and the bucket is listed before and after, so nothing else can have changed. An unchanged re-sync writes nothing, a
sync without the option writes nothing, a manifest someone else wrote is never overwritten, and a sync that accepts no
image publishes no manifest (CVAT refuses one without items). The connection test checks the write permission on
the manifest key with a write that cannot succeed: the bucket is the same after it, whatever the credentials.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from dagster import DagsterInstance

from assets.snapshots import SnapshotKeys
from demo import synth
from pipelines.runner import SyncOutcome, run_sync
from resources.bucket import ConnectionStatus
from resources.catalog import Connection
from resources.providers import open_bucket
from tests.conftest import Workspace
from tests.cvat_manifest_rules import LEDGER
from tests.integration.buckets import (
    AzureTestBucket,
    BucketUnderTest,
    GCSTestBucket,
    LocalTestBucket,
    S3TestBucket,
    unique_name,
)
from tests.integration.test_faults import step_errors, upstream_of
from tests.proxy import FaultProxy, Recorded, route_through, summarize
from tests.servers import Server

pytestmark = pytest.mark.integration

PREFIX = "shots/"
MANIFEST = PREFIX + "manifest.jsonl"


def dataset() -> dict[str, bytes]:
    """Two images CVAT takes, one Vi rejects, and two JPEGs whose names CVAT would not take as images."""
    return {
        "a/upright.jpg": synth.jpeg(64, 48, orientation=1),
        "diagram.png": synth.png(40, 30),
        "rotated.jpg": synth.jpeg(64, 48, orientation=6),
        "photo.xyz": synth.jpeg(32, 32, orientation=1),
        "scan": synth.jpeg(16, 16, orientation=1),
    }


def contents(bucket: BucketUnderTest) -> dict[str, bytes]:
    """Every object in the bucket with its bytes, read straight from the emulator."""
    if isinstance(bucket, S3TestBucket):
        listed = bucket.client.list_objects_v2(Bucket=bucket.bucket).get("Contents", [])
        return {o["Key"]: bucket.client.get_object(Bucket=bucket.bucket, Key=o["Key"])["Body"].read() for o in listed}
    if isinstance(bucket, GCSTestBucket):
        return {b.name: b.download_as_bytes() for b in bucket.bucket.client.list_blobs(bucket.bucket.name)}
    if isinstance(bucket, AzureTestBucket):
        names = list(bucket.container.list_blob_names())
        return {n: bucket.container.download_blob(n).readall() for n in names}
    assert isinstance(bucket, LocalTestBucket)
    return {str(p.relative_to(bucket.root)): p.read_bytes() for p in bucket.root.rglob("*") if p.is_file()}


def bucket_name(bucket: BucketUnderTest) -> str:
    entry = bucket.entry("x")
    return str(entry.get("bucket") or entry.get("root"))


def manifest_writes(provider: str, writes: list[Recorded], bucket: str) -> list[Recorded]:
    """The writes that are a conditional PUT of MANIFEST; the test asserts these are all the writes there are."""
    if provider == "gcs":  # the JSON API's upload names the object in its body; the precondition is in the query
        return [
            r
            for r in writes
            if r.method == "POST"
            and unquote(r.path) == f"/upload/storage/v1/b/{bucket}/o"
            and r.params.get("uploadType") == ["multipart"]
            and "ifGenerationMatch" in r.params
        ]
    return [r for r in writes if r.method == "PUT" and unquote(r.path).endswith(f"/{bucket}/{MANIFEST}")]


def sync(name: str, instance: DagsterInstance) -> SyncOutcome:
    outcome = run_sync(name, instance, log_level="WARNING")
    assert outcome.ok, step_errors(outcome.result)
    return outcome


def manifest_names(text: str) -> list[str]:
    return [item["name"] + item["extension"] for item in map(json.loads, text.splitlines()[2:])]


@pytest.mark.parametrize("test_bucket", ["s3", "gcs", "azure"], indirect=True)
def test_a_publishing_sync_writes_only_its_manifest_and_only_when_it_changed(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    provider, where = test_bucket.provider, bucket_name(test_bucket)
    for key, data in dataset().items():
        test_bucket.put(PREFIX + key, data)
    test_bucket.put("elsewhere/outside.jpg", synth.jpeg(8, 8))
    before = contents(test_bucket)
    name, reader = unique_name(provider), unique_name("reader")
    with FaultProxy(upstream_of(test_bucket), provider=provider) as proxy:  # type: ignore[arg-type]
        publishing = route_through(test_bucket.entry(name, prefix=PREFIX, publish_manifest=True), proxy)
        plain = route_through(test_bucket.entry(reader, prefix=PREFIX), proxy)
        workspace.write_catalog(publishing, plain)

        # First sync: the manifest, and nothing else, appears under the prefix.
        sync(name, dagster_instance)
        writes = proxy.writes()
        assert len(writes) == 1 and manifest_writes(provider, writes, where) == writes, summarize(writes)
        after = contents(test_bucket)
        published = workspace.manifest(name)
        assert after == {**before, MANIFEST: published.encode()}
        LEDGER.check(f"{provider}://{where}/{MANIFEST}", after[MANIFEST].decode())
        assert manifest_names(published) == ["a/upright.jpg", "diagram.png"]  # names relative to the manifest
        misnamed = workspace.query(
            "SELECT key FROM violations WHERE connection = $c AND rule = 'extension_mismatch' ORDER BY key", {"c": name}
        )
        assert misnamed == [(PREFIX + "photo.xyz",), (PREFIX + "scan",)]

        # An unchanged re-sync writes nothing, and does not list the manifest it wrote as an object.
        proxy.clear()
        outcome = sync(name, dagster_instance)
        assert proxy.writes() == [], summarize(proxy.writes())
        assert contents(test_bucket) == after
        keys = workspace.query("SELECT key FROM objects WHERE connection = $c AND NOT deleted", {"c": name})
        assert (MANIFEST,) not in keys and len(keys) == len(dataset())
        index_metadata = outcome.result.asset_materializations_for_node("media_index")[0].metadata
        assert index_metadata["bucket_manifests_written"].value == []
        assert index_metadata["bucket_manifests_unchanged"].value == 1

        # A change to the dataset rewrites the manifest, conditional on the version written before.
        test_bucket.put(PREFIX + "b/new.png", synth.png(20, 10))  # straight to the emulator
        proxy.clear()
        sync(name, dagster_instance)
        writes = proxy.writes()
        assert len(writes) == 1 and manifest_writes(provider, writes, where) == writes, summarize(writes)
        assert manifest_names(contents(test_bucket)[MANIFEST].decode()) == ["a/upright.jpg", "b/new.png", "diagram.png"]

        # A connection without the option, over the same objects, writes nothing.
        proxy.clear()
        settled = contents(test_bucket)
        sync(reader, dagster_instance)
        assert any(r.kind == "object" for r in proxy.requests), summarize(proxy.requests)
        assert proxy.writes() == [], summarize(proxy.writes())
        assert contents(test_bucket) == settled
    assert all(r.method != "DELETE" for r in proxy.requests)


@pytest.mark.parametrize("test_bucket", ["local", "s3", "gcs", "azure"], indirect=True)
def test_a_manifest_someone_else_wrote_is_never_overwritten(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    for key, data in dataset().items():
        test_bucket.put(PREFIX + key, data)
    theirs = b'{"version":"1.1"}\n{"type":"images"}\n{"name":"theirs","extension":".jpg","width":1,"height":1}\n'
    test_bucket.put(MANIFEST, theirs)
    name = unique_name(test_bucket.provider)
    workspace.write_catalog(test_bucket.entry(name, prefix=PREFIX, publish_manifest=True))

    refused = run_sync(name, dagster_instance, log_level="CRITICAL")
    assert not refused.ok
    assert "someone else wrote before bucket-sync first published there" in "\n".join(step_errors(refused.result))
    assert contents(test_bucket)[MANIFEST] == theirs
    assert workspace.query("SELECT count(*) FROM syncs WHERE connection = $c", {"c": name}) == [(1,)]  # indexed

    # Once their file is gone, the next sync (nothing else changed) writes ours.
    test_bucket.delete(MANIFEST)
    sync(name, dagster_instance)
    ours = contents(test_bucket)[MANIFEST]
    assert ours == workspace.manifest(name).encode()

    # Overwritten by someone since: a changed manifest is not written over theirs.
    test_bucket.put(MANIFEST, theirs)
    test_bucket.put(PREFIX + "later.png", synth.png(10, 10))
    refused = run_sync(name, dagster_instance, log_level="CRITICAL")
    assert "someone else wrote since bucket-sync last wrote it" in "\n".join(step_errors(refused.result))
    assert contents(test_bucket)[MANIFEST] == theirs


@pytest.mark.parametrize("test_bucket", ["local", "s3"], indirect=True)
def test_no_accepted_image_means_no_manifest_and_a_warning(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    test_bucket.put(PREFIX + "rotated.jpg", synth.jpeg(64, 48, orientation=6))
    test_bucket.put(PREFIX + "notes.txt", b"not a picture")
    before = contents(test_bucket)
    name = unique_name(test_bucket.provider)
    workspace.write_catalog(test_bucket.entry(name, prefix=PREFIX, profile="strict", publish_manifest=True))

    outcome = sync(name, dagster_instance)
    assert contents(test_bucket) == before
    assert workspace.manifest(name) == ""  # none in the state store either: no file CVAT would refuse
    metadata = outcome.result.asset_materializations_for_node("cvat_manifest")[0].metadata
    assert metadata["published"].value is False
    assert "CVAT refuses a manifest without items" in metadata["not_published"].value
    warnings = [e.user_message for e in dagster_instance.all_logs(outcome.result.run_id) if e.level >= 30]
    assert any("CVAT refuses a manifest without items" in w for w in warnings), warnings

    # An accepted image brings the manifest; losing it again withdraws it from the state store, and the bucket's
    # copy stays (nothing is ever deleted there) with a warning that says so.
    test_bucket.put(PREFIX + "upright.jpg", synth.jpeg(64, 48, orientation=1))
    sync(name, dagster_instance)
    assert manifest_names(contents(test_bucket)[MANIFEST].decode()) == ["upright.jpg"]
    test_bucket.delete(PREFIX + "upright.jpg")
    outcome = sync(name, dagster_instance)
    assert workspace.manifest(name) == "" and MANIFEST in contents(test_bucket)
    warnings = [e.user_message for e in dagster_instance.all_logs(outcome.result.run_id) if e.level >= 30]
    assert any("bucket-sync never deletes" in w for w in warnings), warnings
    assert workspace.state_store.list(SnapshotKeys(name).manifest_prefix) == []


# --- the connection test's write check -----------------------------------------------------------------------------


def _moto_auth(endpoint: str, count: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.fixture
def moto_writers(moto_iam: Server) -> Iterator[dict[str, Any]]:
    """A bucket with one object on the IAM-enforcing moto, a reader and a publisher of exactly MANIFEST."""
    endpoint = moto_iam.endpoint
    common = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    admin = boto3.client("s3", **common, aws_access_key_id="admin", aws_secret_access_key="admin")
    _moto_auth(endpoint, "inf")
    iam = boto3.client("iam", **common, aws_access_key_id="admin", aws_secret_access_key="admin")
    bucket = f"publish-{uuid.uuid4().hex[:8]}"
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key=PREFIX + "one.jpg", Body=synth.jpeg(8, 8))
    read = {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}
    write = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/{MANIFEST}"}
    keys = {}
    for role, statements in (("reader", [read]), ("publisher", [read, write])):
        user = f"{role}-{uuid.uuid4().hex[:6]}"
        iam.create_user(UserName=user)
        policy = {"Version": "2012-10-17", "Statement": statements}
        iam.put_user_policy(UserName=user, PolicyName=role, PolicyDocument=json.dumps(policy))
        keys[role] = iam.create_access_key(UserName=user)["AccessKey"]
    _moto_auth(endpoint, "0")
    try:
        yield {"endpoint": endpoint, "bucket": bucket, "keys": keys, "admin": admin}
    finally:
        _moto_auth(endpoint, "inf")


def s3_listing(admin: Any, bucket: str) -> dict[str, str]:
    return {o["Key"]: o["ETag"] for o in admin.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_s3_connection_test_checks_the_manifest_write_without_writing(
    moto_writers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, bucket, admin = moto_writers["endpoint"], moto_writers["bucket"], moto_writers["admin"]

    def connection(role: str, publish: bool) -> Connection:
        key = moto_writers["keys"][role]
        monkeypatch.setenv("TEST_PUB_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("TEST_PUB_SECRET", key["SecretAccessKey"])
        auth = {"mode": "keys", "access_key_id_env": "TEST_PUB_KEY_ID", "secret_access_key_env": "TEST_PUB_SECRET"}
        options = {"endpoint": endpoint, "path_style": True, "region": "us-east-1"}
        return Connection(
            name=f"{role}-pub", provider="s3", bucket=bucket, prefix=PREFIX, options=options, auth=auth,
            publish_manifest=publish,
        )  # fmt: skip

    for existing in (False, True):  # the probe's answer differs for a missing key (404) and a present one (412)
        _moto_auth(endpoint, "inf")
        if existing:
            admin.put_object(Bucket=bucket, Key=MANIFEST, Body=b'{"version":"1.1"}\n')
        before = s3_listing(admin, bucket)
        _moto_auth(endpoint, "0")
        assert open_bucket(connection("reader", publish=False)).test().status is ConnectionStatus.AVAILABLE
        denied = open_bucket(connection("reader", publish=True)).test()
        assert denied.status is ConnectionStatus.FORBIDDEN, denied
        assert f"s3:PutObject on arn:aws:s3:::{bucket}/{MANIFEST}" in denied.remedy
        assert "may not write the manifest" in denied.detail
        allowed = open_bucket(connection("publisher", publish=True)).test()
        assert allowed.status is ConnectionStatus.AVAILABLE, allowed
        assert "may write the manifest" in allowed.detail
        _moto_auth(endpoint, "inf")
        assert s3_listing(admin, bucket) == before  # nothing written, not even an empty object


def test_azure_connection_test_names_the_sas_permissions_a_publish_needs(
    azurite: Server, azure_admin: Any, azure_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = azure_admin.create_container(f"publish-{uuid.uuid4().hex[:8]}")
    container.upload_blob(PREFIX + "one.jpg", synth.jpeg(8, 8))

    def sas(**permissions: bool) -> str:
        return generate_container_sas(
            azurite.extra["account"], container.container_name, account_key=azurite.extra["key"],
            permission=ContainerSasPermissions(**permissions), expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )  # fmt: skip

    def tested(token: str) -> Any:
        monkeypatch.setenv("TEST_PUB_SAS", token)
        conn = azure_connection(
            "az-pub", container.container_name, azurite, {"mode": "sas", "sas_token_env": "TEST_PUB_SAS"}
        )
        return open_bucket(conn.model_copy(update={"prefix": PREFIX, "publish_manifest": True})).test()

    before = {b.name: b.etag for b in container.list_blobs()}
    read_only = sas(read=True, list=True)
    denied = tested(read_only)
    assert denied.status is ConnectionStatus.FORBIDDEN, denied
    assert read_only.split("sig=")[1][:20] not in denied.detail + denied.remedy  # the SAS never reaches a text
    assert "sp=rlcw" in denied.remedy and "Storage Blob Data Contributor" in denied.remedy
    assert tested(sas(read=True, list=True, create=True, write=True)).status is ConnectionStatus.AVAILABLE
    assert {b.name: b.etag for b in container.list_blobs()} == before


def test_gcs_connection_test_checks_the_write_without_writing(
    fake_gcs: Server, gcs_admin: Any, gcs_connection: Any
) -> None:
    bucket = gcs_admin.create_bucket(f"publish-{uuid.uuid4().hex[:8]}")
    bucket.blob(PREFIX + "one.jpg").upload_from_string(synth.jpeg(8, 8))
    conn = gcs_connection("gcs-pub", bucket.name, fake_gcs.endpoint)
    publishing = conn.model_copy(update={"prefix": PREFIX, "publish_manifest": True})
    for existing in (False, True):
        if existing:
            bucket.blob(MANIFEST).upload_from_string(b'{"version":"1.1"}\n')
        before = {b.name: b.generation for b in gcs_admin.list_blobs(bucket.name)}
        result = open_bucket(publishing).test()
        assert result.status is ConnectionStatus.AVAILABLE and "may write the manifest" in result.detail, result
        assert {b.name: b.generation for b in gcs_admin.list_blobs(bucket.name)} == before


def test_local_connection_test_and_write_stay_inside_the_prefix(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    (root / PREFIX).mkdir(parents=True)
    conn = Connection(name="local-pub", provider="local", root=str(root), prefix=PREFIX, publish_manifest=True)
    bucket = open_bucket(conn)
    assert "may write the manifest" in bucket.test().detail
    assert list(root.rglob("*")) == [root / "shots"]
    written = bucket.put_manifest(MANIFEST, b"x", None)
    assert (root / MANIFEST).read_bytes() == b"x"
    assert bucket.read_manifest(MANIFEST) == (b"x", written)
    for outside in ("elsewhere/manifest.jsonl", PREFIX + "../manifest.jsonl", PREFIX + "photo.jpg"):
        with pytest.raises(Exception, match="refusing to write"):
            bucket.put_manifest(outside, b"x", None)
    read_only = open_bucket(conn.model_copy(update={"publish_manifest": False}))
    with pytest.raises(Exception, match="publish_manifest is off"):
        read_only.put_manifest(MANIFEST, b"y", written)
    assert (root / MANIFEST).read_bytes() == b"x"
