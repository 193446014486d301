"""The CORS audit against the emulators: every verdict read back from a bucket's real CORS configuration.

- S3 (moto): rules put with put_bucket_cors; UNREADABLE from a moto server with IAM enforced and a user without
  s3:GetBucketCORS.
- Azure (Azurite): rules set with set_service_properties (CORS is per account, so the tests restore it); UNREADABLE
  from an account SAS without the service resource type (srt without s).
- GCS: fake-gcs-server does not keep a bucket's `cors` field (it answers [] after a create or a patch that set it),
  so it proves only MISSING. The other verdicts are served from a loopback HTTP server that answers the JSON API's
  `buckets.get` with bodies in the shape the real API returns (a bucket resource with `cors`, and its 403 error for
  a principal without storage.buckets.get); they are written from Google's API reference, not captured live.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.storage.blob import AccountSasPermissions, CorsRule, ResourceTypes, generate_account_sas

from media.cors import CorsStatus, CorsVerdict
from resources.catalog import Connection
from resources.providers import cors_audit
from tests.conftest import Workspace
from tests.integration.buckets import AzureTestBucket, GCSTestBucket, LocalTestBucket, S3TestBucket, unique_name
from tests.servers import Server

pytestmark = pytest.mark.integration

APP = "https://app.example.com"
WIDE = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"]}
#: (S3 rules, expected verdict) for each verdict an S3 bucket of private media can get.
S3_CASES = [
    ([], CorsStatus.MISSING),
    ([{"AllowedOrigins": ["https://other.example.org"], "AllowedMethods": ["GET", "HEAD"]}], CorsStatus.MISSING),
    ([{"AllowedOrigins": [APP], "AllowedMethods": ["GET"], "AllowedHeaders": ["Range"]}], CorsStatus.TOO_NARROW),
    ([{"AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET", "HEAD"]}], CorsStatus.TOO_NARROW),
    ([WIDE], CorsStatus.TOO_BROAD),
    ([{"AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["range"]}],
     CorsStatus.ALLOWED),
]  # fmt: skip


def audit(entry: dict[str, Any]) -> CorsVerdict:
    verdict = cors_audit(Connection.model_validate({**entry, "cors_origin": APP}))
    assert verdict is not None
    return verdict


# --- S3 (moto) -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rules", "expected"), S3_CASES)
def test_s3_verdicts(moto_server: Server, monkeypatch: pytest.MonkeyPatch, rules: list[Any], expected: CorsStatus):
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    if rules:
        bucket.client.put_bucket_cors(Bucket=bucket.bucket, CORSConfiguration={"CORSRules": rules})
    verdict = audit(bucket.entry(unique_name("s3")))
    assert verdict.status is expected, verdict
    if expected is CorsStatus.ALLOWED:
        assert verdict.fix == ""
        return
    assert verdict.fix.startswith(f"aws s3api put-bucket-cors --bucket {bucket.bucket} --cors-configuration ")
    # The fix, applied as written, makes the verdict ALLOWED.
    document = json.loads(verdict.fix.split("--cors-configuration ", 1)[1].strip("'"))
    bucket.client.put_bucket_cors(Bucket=bucket.bucket, CORSConfiguration=document)
    assert audit(bucket.entry(unique_name("s3"))).status is CorsStatus.ALLOWED
    assert S3TestBucket.SECRET not in verdict.fix + verdict.reason


def _moto_auth(endpoint: str, count: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_s3_without_get_bucket_cors_names_the_permission(moto_iam: Server, monkeypatch: pytest.MonkeyPatch):
    ep = moto_iam.endpoint
    common = {"endpoint_url": ep, "region_name": "us-east-1"}
    admin = {"aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
    _moto_auth(ep, "inf")
    user = f"cors-reader-{uuid.uuid4().hex[:8]}"
    iam = boto3.client("iam", **common, **admin)
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}]}  # fmt: skip
    iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=json.dumps(policy))
    name = f"cors-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", **common, **admin).create_bucket(Bucket=name)
    monkeypatch.setenv("CORS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("CORS_SECRET", key["SecretAccessKey"])
    entry = {
        "name": "s3-denied", "provider": "s3", "bucket": name,
        "options": {"endpoint": ep, "path_style": True, "region": "us-east-1"},
        "auth": {"mode": "keys", "access_key_id_env": "CORS_KEY_ID", "secret_access_key_env": "CORS_SECRET"},
    }  # fmt: skip
    _moto_auth(ep, "0")
    try:
        verdict = audit(entry)
    finally:
        _moto_auth(ep, "inf")
    assert verdict.status is CorsStatus.UNREADABLE, verdict
    assert f"s3:GetBucketCORS on arn:aws:s3:::{name}" in verdict.reason
    assert key["SecretAccessKey"] not in verdict.reason


# --- Azure (Azurite) -----------------------------------------------------------------------------------------------


@pytest.fixture
def azure_cors(azurite: Server, azure_admin: Any) -> Iterator[Callable[[list[CorsRule]], None]]:
    """Set the account's blob CORS rules; the account is shared by the session, so they are cleared afterwards."""
    yield lambda rules: azure_admin.set_service_properties(cors=rules)
    azure_admin.set_service_properties(cors=[])


AZURE_CASES = [
    ([], CorsStatus.MISSING),
    ([CorsRule(["https://other.example.org"], ["GET", "HEAD"], allowed_headers=["*"])], CorsStatus.MISSING),
    ([CorsRule([APP], ["GET", "HEAD"], allowed_headers=["x-ms-*"])], CorsStatus.TOO_NARROW),
    ([CorsRule(["*"], ["GET", "HEAD"], allowed_headers=["*"])], CorsStatus.TOO_BROAD),
    ([CorsRule([APP], ["GET", "HEAD"], allowed_headers=["range"], max_age_in_seconds=60)], CorsStatus.ALLOWED),
]


@pytest.mark.parametrize(("rules", "expected"), AZURE_CASES)
def test_azure_verdicts(
    azurite: Server,
    azure_admin: Any,
    azure_cors: Callable[[list[CorsRule]], None],
    monkeypatch: pytest.MonkeyPatch,
    rules: list[CorsRule],
    expected: CorsStatus,
):
    bucket = AzureTestBucket(azurite, azure_admin, monkeypatch)
    azure_cors(rules)
    verdict = audit(bucket.entry(unique_name("az")))
    assert verdict.status is expected, verdict
    if expected is not CorsStatus.ALLOWED:
        account = azurite.extra["account"]
        assert f"az storage cors add --services b --methods GET HEAD --origins {APP} " in verdict.fix
        assert verdict.fix.endswith(f"--account-name {account}")
    assert azurite.extra["key"] not in verdict.fix + verdict.reason


def test_azure_sas_without_service_access_names_the_permission(
    azurite: Server, azure_admin: Any, monkeypatch: pytest.MonkeyPatch
):
    bucket = AzureTestBucket(azurite, azure_admin, monkeypatch)
    sas = generate_account_sas(
        azurite.extra["account"], azurite.extra["key"], ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, list=True), dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )  # fmt: skip
    monkeypatch.setenv("CORS_SAS", sas)
    entry = {**bucket.entry("az-sas"), "auth": {"mode": "sas", "sas_token_env": "CORS_SAS"}}
    verdict = audit(entry)
    assert verdict.status is CorsStatus.UNREADABLE, verdict
    assert "Microsoft.Storage/storageAccounts/blobServices/read" in verdict.reason
    assert "ss=b srt=s sp=r" in verdict.reason
    assert sas.split("sig=")[1][:20] not in verdict.reason


# --- GCS -----------------------------------------------------------------------------------------------------------


def test_gcs_emulator_bucket_without_cors_is_missing(fake_gcs: Server, gcs_admin: Any):
    bucket = GCSTestBucket(fake_gcs.endpoint, gcs_admin)
    verdict = audit(bucket.entry(unique_name("gcs")))
    assert verdict.status is CorsStatus.MISSING, verdict
    assert f"gcloud storage buckets update gs://{bucket.bucket.name} --cors-file=cors.json" in verdict.fix


def _gcs_bucket_resource(name: str, cors: list[dict[str, Any]]) -> dict[str, Any]:
    """A `buckets.get` answer as the JSON API gives it (projection=noAcl)."""
    return {
        "kind": "storage#bucket", "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}", "id": name,
        "name": name, "projectNumber": "123456789012", "metageneration": "3", "location": "US",
        "storageClass": "STANDARD", "etag": "CAM=", "timeCreated": "2024-05-02T10:11:12.345Z",
        "updated": "2024-05-03T08:09:10.111Z", "cors": cors,
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}, "publicAccessPrevention": "enforced"},
        "locationType": "multi-region", "rpo": "DEFAULT",
    }  # fmt: skip


def _gcs_forbidden(name: str) -> dict[str, Any]:
    message = (
        "bucket-sync@test.iam.gserviceaccount.com does not have storage.buckets.get access to the Google Cloud "
        "Storage bucket. Permission 'storage.buckets.get' denied on resource (or it may not exist)."
    )
    return {"error": {"code": 403, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": "forbidden"}]}}  # fmt: skip


@pytest.fixture
def gcs_json_api() -> Iterator[tuple[str, dict[str, tuple[int, dict[str, Any]]]]]:
    """A loopback server answering `GET /storage/v1/b/<bucket>` from a table the test fills: (status, body)."""
    answers: dict[str, tuple[int, dict[str, Any]]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.split("?", 1)[0].removeprefix("/storage/v1/b/")
            status, body = answers.get(
                name, (404, {"error": {"code": 404, "message": "The specified bucket does not exist."}})
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


GCS_CASES = [
    ([{"origin": ["https://other.example.org"], "method": ["GET", "HEAD"], "responseHeader": ["Range"]}],
     CorsStatus.MISSING),
    ([{"origin": [APP], "method": ["GET", "HEAD"], "responseHeader": ["Content-Type"], "maxAgeSeconds": 3600}],
     CorsStatus.TOO_NARROW),
    ([{"origin": ["*"], "method": ["GET", "HEAD"], "responseHeader": ["Range", "Content-Range"]}],
     CorsStatus.TOO_BROAD),
    ([{"origin": [APP], "method": ["GET", "HEAD"], "responseHeader": ["Range", "Content-Range"],
       "maxAgeSeconds": 3600}], CorsStatus.ALLOWED),
]  # fmt: skip


def _gcs_entry(endpoint: str, bucket: str, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A private GCS connection: a service-account key (signed locally, never sent to a token endpoint)."""
    monkeypatch.setenv("CORS_GCS_KEY", str(key_file))
    return {
        "name": unique_name("gcs"), "provider": "gcs", "bucket": bucket,
        "options": {"endpoint": endpoint, "project": "test"},
        "auth": {"mode": "service_account", "key_file_env": "CORS_GCS_KEY"},
    }  # fmt: skip


@pytest.mark.parametrize(("cors", "expected"), GCS_CASES)
def test_gcs_verdicts_from_json_api_answers(
    gcs_json_api: tuple[str, dict[str, tuple[int, dict[str, Any]]]],
    service_account_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    cors: list[dict[str, Any]],
    expected: CorsStatus,
):
    endpoint, answers = gcs_json_api
    answers["media"] = (200, _gcs_bucket_resource("media", cors))
    verdict = audit(_gcs_entry(endpoint, "media", service_account_file, monkeypatch))
    assert verdict.status is expected, verdict
    if expected is not CorsStatus.ALLOWED:
        cors_file = json.loads(verdict.fix.split("write cors.json:\n", 1)[1].split("\nthen run:", 1)[0])
        assert cors_file[0] == {
            "origin": [APP], "method": ["GET", "HEAD"],
            "responseHeader": ["Range", "Content-Length", "Content-Range", "Accept-Ranges", "ETag"],
            "maxAgeSeconds": 3600,
        }  # fmt: skip
        answers["media"] = (200, _gcs_bucket_resource("media", cors_file))
        assert audit(_gcs_entry(endpoint, "media", service_account_file, monkeypatch)).status is CorsStatus.ALLOWED


def test_gcs_forbidden_names_the_permission(
    gcs_json_api: tuple[str, dict[str, tuple[int, dict[str, Any]]]],
    service_account_file: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    endpoint, answers = gcs_json_api
    answers["media"] = (403, _gcs_forbidden("media"))
    verdict = audit(_gcs_entry(endpoint, "media", service_account_file, monkeypatch))
    assert verdict.status is CorsStatus.UNREADABLE, verdict
    assert "storage.buckets.get on gs://media" in verdict.reason


# --- local, the asset check, and the command line --------------------------------------------------------------------


def test_local_is_not_applicable(tmp_path: Path):
    verdict = audit(LocalTestBucket(tmp_path / "bucket").entry("disk"))
    assert verdict.status is CorsStatus.NOT_APPLICABLE and verdict.ok


def test_check_warns_without_blocking_and_the_cli_shows_the_verdict(
    moto_server: Server, monkeypatch: pytest.MonkeyPatch, workspace: Workspace, dagster_instance: Any
):
    from dagster import AssetCheckSeverity

    from pipelines.runner import run_sync

    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    bucket.put("one.jpg", b"not really a jpeg")
    bucket.client.put_bucket_cors(Bucket=bucket.bucket, CORSConfiguration={"CORSRules": [WIDE]})
    name = unique_name("s3")
    workspace.write_catalog(bucket.entry(name, cors_origin=APP))

    outcome = run_sync(name, dagster_instance, log_level="WARNING", only=["object_listing"])
    assert outcome.ok, outcome.failures
    evaluation = {e.check_name: e for e in outcome.result.get_asset_check_evaluations()}["cors_audit"]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.metadata["verdict"].value == "TOO_BROAD"
    assert "put-bucket-cors" in evaluation.metadata["fix"].value

    cli = str(Path(sys.executable).parent / "bucket-sync")
    env = {**os.environ, "DAGSTER_HOME": str(workspace.home.parent / "dagster-home"), "COLUMNS": "200"}
    done = subprocess.run([cli, "test", name], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"CORS {APP}: TOO_BROAD:" in done.stdout
    assert "aws s3api put-bucket-cors" in done.stdout
    assert S3TestBucket.SECRET not in done.stdout + done.stderr
