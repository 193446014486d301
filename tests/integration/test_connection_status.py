"""Connection tests, each status provoked for real against an emulator, and secrets kept out of every text.

What each emulator can provoke:
- S3 (moto with IAM enforcement switched on via /moto-api/reset-auth): every status, including FORBIDDEN for an unknown
  key and for a known identity without s3 permissions; profile and assume_role modes authenticate for real.
- Azure (Azurite): every status; FORBIDDEN for a wrong account key and for a SAS without List (sp=r).
- GCS (fake-gcs-server): no credential checks at all, so FORBIDDEN cannot be provoked; the others can.
MISCONFIGURED comes from `from_connection` (an unset variable raises ConnectionMisconfigured, which the caller turns
into the status) and from catalog validation (a bad name); GCS's default mode without ADC, and Azure's without any
credential to sign in with, yield it from test().
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from resources.bucket import BucketError, ConnectionMisconfigured, ConnectionStatus, ConnectionTest
from resources.catalog import CatalogError, Connection, load_catalog
from resources.providers import open_bucket
from tests.servers import Server, free_port

pytestmark = pytest.mark.integration

ACCOUNT_ID = "123456789012"  # moto's default account
READ_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject", "sts:AssumeRole"], "Resource": "*"}],
}


def closed_endpoint() -> str:
    """A loopback port with nothing listening: connection refused, at once."""
    return f"http://127.0.0.1:{free_port()}"


def assert_status(result: ConnectionTest, status: ConnectionStatus, *remedy_words: str) -> None:
    assert result.status is status, result
    assert result.detail
    for word in remedy_words:
        assert word in result.remedy, result


# --- S3 against moto with IAM enforced ---------------------------------------------------------------------------


def _moto_auth(endpoint: str, count: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form content type would hide the body from moto
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def moto_enforcing(moto_iam: Server) -> Iterator[dict[str, Any]]:
    """Users, a role and a bucket on our own moto server, then IAM enforcement on for the module."""
    ep = moto_iam.endpoint
    common = {"endpoint_url": ep, "region_name": "us-east-1"}
    admin = {"aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
    _moto_auth(ep, "inf")
    iam = boto3.client("iam", **common, **admin)
    keys = {}
    for user, policy in (("reader", READ_POLICY), ("nobody", None)):
        iam.create_user(UserName=user)
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
        if policy:
            iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=json.dumps(policy))
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/reader"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "dataloop-tenant-42"}},
            }
        ],
    }
    role = iam.create_role(RoleName="media-reader", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(RoleName="media-reader", PolicyName="read", PolicyDocument=json.dumps(READ_POLICY))
    bucket = f"status-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", **common, **admin)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="one.jpg", Body=b"HEAD" + bytes(100))
    _moto_auth(ep, "0")
    try:
        yield {"endpoint": ep, "bucket": bucket, "keys": keys, "role_arn": role["Arn"]}
    finally:
        _moto_auth(ep, "inf")


def s3_connection(name: str, endpoint: str, bucket: str, auth: dict[str, Any]) -> Connection:
    return Connection(
        name=name,
        provider="s3",
        bucket=bucket,
        options={"endpoint": endpoint, "path_style": True, "region": "us-east-1"},
        auth=auth,
    )


def s3_keys(monkeypatch: pytest.MonkeyPatch, key_id: str, secret: str) -> dict[str, str]:
    monkeypatch.setenv("TEST_S3_KEY_ID", key_id)
    monkeypatch.setenv("TEST_S3_SECRET", secret)
    return {"mode": "keys", "access_key_id_env": "TEST_S3_KEY_ID", "secret_access_key_env": "TEST_S3_SECRET"}


def test_s3_available_with_a_reader_key(moto_enforcing: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    key = moto_enforcing["keys"]["reader"]
    auth = s3_keys(monkeypatch, key["AccessKeyId"], key["SecretAccessKey"])
    bucket = open_bucket(s3_connection("s3-ok", moto_enforcing["endpoint"], moto_enforcing["bucket"], auth))
    assert_status(bucket.test(), ConnectionStatus.AVAILABLE)
    assert bucket.read_range("one.jpg", 0, 4) == b"HEAD"


def test_s3_unknown_key_is_forbidden(moto_enforcing: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    auth = s3_keys(monkeypatch, "AKIAUNKNOWNUNKNOWN00", "wrong-secret-wrong-secret")
    bucket = open_bucket(s3_connection("s3-wrong", moto_enforcing["endpoint"], moto_enforcing["bucket"], auth))
    assert_status(bucket.test(), ConnectionStatus.FORBIDDEN, "s3:ListBucket", "s3:GetObject")


def test_s3_wrong_secret_is_forbidden(moto_enforcing: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    key = moto_enforcing["keys"]["reader"]
    auth = s3_keys(monkeypatch, key["AccessKeyId"], "not-the-secret-at-all")
    bucket = open_bucket(s3_connection("s3-badsig", moto_enforcing["endpoint"], moto_enforcing["bucket"], auth))
    assert_status(bucket.test(), ConnectionStatus.FORBIDDEN, "s3:ListBucket")


def test_s3_identity_without_permissions_is_forbidden(moto_enforcing: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    key = moto_enforcing["keys"]["nobody"]
    auth = s3_keys(monkeypatch, key["AccessKeyId"], key["SecretAccessKey"])
    bucket = open_bucket(s3_connection("s3-nobody", moto_enforcing["endpoint"], moto_enforcing["bucket"], auth))
    assert_status(bucket.test(), ConnectionStatus.FORBIDDEN, "s3:ListBucket")


def test_s3_missing_bucket_is_not_found(moto_enforcing: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    key = moto_enforcing["keys"]["reader"]
    auth = s3_keys(monkeypatch, key["AccessKeyId"], key["SecretAccessKey"])
    bucket = open_bucket(s3_connection("s3-missing", moto_enforcing["endpoint"], "no-such-bucket-here", auth))
    assert_status(bucket.test(), ConnectionStatus.NOT_FOUND, "bucket")


def test_s3_closed_port_is_unreachable(monkeypatch: pytest.MonkeyPatch):
    auth = s3_keys(monkeypatch, "AKIAUNKNOWNUNKNOWN00", "whatever-whatever")
    bucket = open_bucket(s3_connection("s3-closed", closed_endpoint(), "some-bucket", auth))
    assert_status(bucket.test(), ConnectionStatus.UNREACHABLE, "options.endpoint")


def test_s3_unset_variable_is_misconfigured(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TEST_S3_UNSET_SECRET", raising=False)
    monkeypatch.setenv("TEST_S3_KEY_ID", "AKIAUNKNOWNUNKNOWN00")
    auth = {"mode": "keys", "access_key_id_env": "TEST_S3_KEY_ID", "secret_access_key_env": "TEST_S3_UNSET_SECRET"}
    with pytest.raises(ConnectionMisconfigured, match=r"TEST_S3_UNSET_SECRET .*auth\.secret_access_key_env"):
        open_bucket(s3_connection("s3-unset", "http://127.0.0.1:1", "some-bucket", auth))


def test_s3_profile_mode_authenticates_with_the_profile(
    moto_enforcing: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    key = moto_enforcing["keys"]["reader"]
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile media]\naws_access_key_id = {key['AccessKeyId']}\n"
        f"aws_secret_access_key = {key['SecretAccessKey']}\nregion = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    conn = s3_connection("s3-profile", moto_enforcing["endpoint"], moto_enforcing["bucket"], {"mode": "profile"})
    conn = conn.model_copy(update={"auth": {"mode": "profile", "profile": "media"}})
    bucket = open_bucket(conn)
    assert_status(bucket.test(), ConnectionStatus.AVAILABLE)
    assert bucket.read_range("one.jpg", 0, 4) == b"HEAD"  # obstore, through Boto3CredentialProvider

    missing = conn.model_copy(update={"auth": {"mode": "profile", "profile": "absent"}})
    with pytest.raises(ConnectionMisconfigured, match="profile 'absent'"):
        open_bucket(missing)


def test_s3_assume_role_mode(moto_enforcing: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    key = moto_enforcing["keys"]["reader"]
    monkeypatch.setenv("TEST_S3_SRC_ID", key["AccessKeyId"])
    monkeypatch.setenv("TEST_S3_SRC_SECRET", key["SecretAccessKey"])
    auth = {
        "mode": "assume_role",
        "role_arn": moto_enforcing["role_arn"],
        "external_id": "dataloop-tenant-42",
        "session_name": "bucket-sync-test",
        "access_key_id_env": "TEST_S3_SRC_ID",
        "secret_access_key_env": "TEST_S3_SRC_SECRET",
    }
    bucket = open_bucket(s3_connection("s3-role", moto_enforcing["endpoint"], moto_enforcing["bucket"], auth))
    assert_status(bucket.test(), ConnectionStatus.AVAILABLE)
    assert bucket.read_range("one.jpg", 0, 4) == b"HEAD"  # obstore, assumed-role credentials
    creds = bucket.get_client()._request_signer._credentials.get_frozen_credentials()
    assert creds.access_key != key["AccessKeyId"] and creds.token  # really the role's temporary credentials

    # Source credentials the STS endpoint rejects: FORBIDDEN, naming the trust policy.
    monkeypatch.setenv("TEST_S3_SRC_SECRET", "not-the-source-secret")
    rejected = open_bucket(s3_connection("s3-role-bad", moto_enforcing["endpoint"], moto_enforcing["bucket"], auth))
    assert_status(rejected.test(), ConnectionStatus.FORBIDDEN, "sts:AssumeRole")


# --- Azure against Azurite ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def az_container(azure_admin: Any) -> str:
    name = f"status-{uuid.uuid4().hex[:8]}"
    azure_admin.create_container(name).upload_blob("one.jpg", b"HEAD" + bytes(100))
    return name


def container_sas(azurite: Server, container: str, **permissions: bool) -> str:
    return generate_container_sas(
        azurite.extra["account"],
        container,
        account_key=azurite.extra["key"],
        permission=ContainerSasPermissions(**permissions),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )


def test_azure_available(azurite: Server, az_container: str, azure_connection: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_AZ_KEY", azurite.extra["key"])
    conn = azure_connection("az-ok", az_container, azurite, {"mode": "account_key", "account_key_env": "TEST_AZ_KEY"})
    assert_status(open_bucket(conn).test(), ConnectionStatus.AVAILABLE)


def test_azure_wrong_key_is_forbidden(
    azurite: Server, az_container: str, azure_connection: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TEST_AZ_KEY", "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=")
    conn = azure_connection("az-bad", az_container, azurite, {"mode": "account_key", "account_key_env": "TEST_AZ_KEY"})
    assert_status(open_bucket(conn).test(), ConnectionStatus.FORBIDDEN, "Storage Blob Data Reader", "account_key_env")


def test_azure_sas_without_list_is_forbidden(
    azurite: Server, az_container: str, azure_connection: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TEST_AZ_SAS", container_sas(azurite, az_container, read=True))  # sp=r
    conn = azure_connection("az-sas-r", az_container, azurite, {"mode": "sas", "sas_token_env": "TEST_AZ_SAS"})
    assert_status(open_bucket(conn).test(), ConnectionStatus.FORBIDDEN, "sp=rl", "sas_token_env")


def test_azure_missing_container_is_not_found(azurite: Server, azure_connection: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_AZ_KEY", azurite.extra["key"])
    conn = azure_connection(
        "az-nf", "no-such-container", azurite, {"mode": "account_key", "account_key_env": "TEST_AZ_KEY"}
    )
    assert_status(open_bucket(conn).test(), ConnectionStatus.NOT_FOUND, "bucket")


def test_azure_closed_port_is_unreachable(azurite: Server, azure_connection: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_AZ_KEY", azurite.extra["key"])
    conn = azure_connection("az-closed", "media", azurite, {"mode": "account_key", "account_key_env": "TEST_AZ_KEY"})
    conn = conn.model_copy(update={"options": {**conn.options, "endpoint": closed_endpoint() + "/devstoreaccount1"}})
    assert_status(open_bucket(conn).test(), ConnectionStatus.UNREACHABLE, "options.endpoint")


@pytest.mark.parametrize(
    ("auth", "variable"),
    [
        ({"mode": "account_key", "account_key_env": "TEST_AZ_UNSET"}, "auth.account_key_env"),
        ({"mode": "sas", "sas_token_env": "TEST_AZ_UNSET"}, "auth.sas_token_env"),
        ({"mode": "connection_string", "connection_string_env": "TEST_AZ_UNSET"}, "auth.connection_string_env"),
        (
            {"mode": "service_principal", "tenant_id": "t", "client_id": "c", "client_secret_env": "TEST_AZ_UNSET"},
            "auth.client_secret_env",
        ),
    ],
)
def test_azure_unset_variable_is_misconfigured(
    azurite: Server, azure_connection: Any, monkeypatch: pytest.MonkeyPatch, auth: dict[str, str], variable: str
):
    monkeypatch.delenv("TEST_AZ_UNSET", raising=False)
    with pytest.raises(ConnectionMisconfigured, match=rf"TEST_AZ_UNSET \(named by {variable}\)"):
        open_bucket(azure_connection("az-unset", "media", azurite, auth))


#: What azure-identity's DefaultAzureCredential reads to find a credential: none of them may be set for the test below.
AZURE_IDENTITY_VARIABLES = (
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME",
    "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "MSI_ENDPOINT",
)  # fmt: skip


def test_azure_default_mode_without_credentials_is_misconfigured_and_quiet(
    azurite: Server,
    azure_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
):
    """As GCS's default mode without ADC: no credential to sign in with is a setting to fix (MISCONFIGURED, with
    `az login`), not a refusal by the storage account (FORBIDDEN); and azure-identity's dozen lines naming every
    credential it tried stay out of stderr and the log. The endpoint is https (a bearer token is never sent over
    http) on a port where nothing listens: the token is sought first, so storage is never reached."""
    for variable in AZURE_IDENTITY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no az CLI, azd or shared token cache to sign in with
    conn = azure_connection("az-default", "media", azurite, {"mode": "default"})
    endpoint = closed_endpoint().replace("http://", "https://") + "/devstoreaccount1"
    conn = conn.model_copy(update={"options": {**conn.options, "endpoint": endpoint}})
    levels = {name: logging.getLogger(name).level for name in ("azure.identity", "azure.core")}
    caplog.set_level(logging.DEBUG)

    result = open_bucket(conn).test()

    assert_status(result, ConnectionStatus.MISCONFIGURED, "az login", "AZURE_CLIENT_ID")
    assert "auth.mode default" in result.detail and "\n" not in result.detail, result.detail
    assert [r.getMessage() for r in caplog.records if r.name.startswith("azure.identity")] == []
    assert "DefaultAzureCredential" not in capfd.readouterr().err
    assert {name: logging.getLogger(name).level for name in levels} == levels  # restored after the test


# --- GCS against fake-gcs-server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_status_bucket(gcs_admin: Any) -> str:
    name = f"status-{uuid.uuid4().hex[:8]}"
    gcs_admin.create_bucket(name).blob("one.jpg").upload_from_string(b"HEAD" + bytes(100))
    return name


def test_gcs_available(fake_gcs: Server, gcs_status_bucket: str, gcs_connection: Any):
    assert_status(
        open_bucket(gcs_connection("gcs-ok", gcs_status_bucket, fake_gcs.endpoint)).test(), ConnectionStatus.AVAILABLE
    )


def test_gcs_missing_bucket_is_not_found(fake_gcs: Server, gcs_connection: Any):
    bucket = open_bucket(gcs_connection("gcs-nf", "no-such-bucket", fake_gcs.endpoint))
    assert_status(bucket.test(), ConnectionStatus.NOT_FOUND, "bucket")


def test_gcs_closed_port_is_unreachable(gcs_connection: Any):
    bucket = open_bucket(gcs_connection("gcs-closed", "some-bucket", closed_endpoint()))
    assert_status(bucket.test(), ConnectionStatus.UNREACHABLE, "options.endpoint")


def test_gcs_unset_variable_is_misconfigured(gcs_connection: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TEST_GCS_UNSET", raising=False)
    auth = {"mode": "service_account", "key_file_env": "TEST_GCS_UNSET"}
    with pytest.raises(ConnectionMisconfigured, match=r"TEST_GCS_UNSET \(named by auth\.key_file_env\)"):
        open_bucket(gcs_connection("gcs-unset", "some-bucket", "http://127.0.0.1:1", auth))


def test_gcs_default_mode_without_credentials_is_misconfigured(
    fake_gcs: Server, gcs_connection: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    bucket = open_bucket(gcs_connection("gcs-adc", "some-bucket", fake_gcs.endpoint, auth={"mode": "default"}))
    assert_status(bucket.test(), ConnectionStatus.MISCONFIGURED, "GOOGLE_APPLICATION_CREDENTIALS")


# --- bad names are MISCONFIGURED at catalog load -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"provider": "gcs", "bucket": "goog-media"}, "field 'bucket': GCS bucket name 'goog-media' must not begin"),
        (
            {"provider": "azure", "bucket": "media", "options": {"account": "Dev_Store"}},
            "field 'options.account': Azure storage account name 'Dev_Store'",
        ),
        (
            {"provider": "azure", "bucket": "me--dia", "options": {"account": "devstore"}},
            "field 'bucket': Azure container name 'me--dia' must not contain consecutive '-'",
        ),
        ({"provider": "s3", "bucket": "Media"}, "field 'bucket': S3 bucket name 'Media'"),
    ],
)
def test_bad_names_fail_catalog_loading(tmp_path: Path, entry: dict[str, Any], expected: str):
    catalog = tmp_path / "connections.yaml"
    catalog.write_text(json.dumps({"connections": [{"name": "media", **entry}]}))
    with pytest.raises(CatalogError) as info:
        load_catalog(catalog)
    assert expected in str(info.value)


# --- secrets never reach a connection test or an error -----------------------------------------------------------

SECRET = "Zq7SECRETvalueDoNotLeak9x"


def texts_of(result: ConnectionTest) -> str:
    return " ".join([result.detail, result.remedy, repr(result)])


def provoke(bucket: Any) -> list[str]:
    """The connection test's texts, and the message of every error that listing and reads raise."""
    texts = [texts_of(bucket.test())]
    for call in (
        lambda: list(bucket.iter_listing("")),
        lambda: bucket.read_range("one.jpg", 0, 4, etag="0xNOTTHEETAG"),
        lambda: bucket.read_range("odd//key.jpg", 0, 4),
        lambda: bucket.read_range("absent.jpg", 0, 4),
    ):
        try:
            call()
        except (BucketError, Exception) as exc:  # any error a caller could log
            texts.append(f"{type(exc).__name__}: {exc} {exc!r}")
    return texts


def test_secrets_never_appear_in_tests_or_errors(
    moto_enforcing: dict[str, Any],
    azurite: Server,
    az_container: str,
    fake_gcs: Server,
    gcs_status_bucket: str,
    azure_connection: Any,
    gcs_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    b64_secret = base64.b64encode(SECRET.encode() * 2).decode()  # a well-formed, wrong account key
    sas = f"sv=2021-08-06&sr=c&sp=rl&se=2099-01-01T00%3A00%3A00Z&sig={SECRET}%3D"  # a wrong signature
    monkeypatch.setenv("TEST_LEAK_ID", "AKIAUNKNOWNUNKNOWN00")
    monkeypatch.setenv("TEST_LEAK_SECRET", SECRET)
    monkeypatch.setenv("TEST_LEAK_AZ_KEY", b64_secret)
    monkeypatch.setenv("TEST_LEAK_AZ_SAS", sas)
    endpoint = azurite.extra["blob_endpoint"]
    monkeypatch.setenv(
        "TEST_LEAK_AZ_CS", f"AccountName=devstoreaccount1;AccountKey={b64_secret};BlobEndpoint={endpoint}"
    )
    key_file = tmp_path / "leaky-sa.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test",
                "private_key_id": "0123",
                "private_key": f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n",
                "client_email": "leak@test.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    monkeypatch.setenv("TEST_LEAK_GCS_KEY", str(key_file))

    buckets = [
        open_bucket(
            s3_connection(
                "leak-s3",
                moto_enforcing["endpoint"],
                moto_enforcing["bucket"],
                {"mode": "keys", "access_key_id_env": "TEST_LEAK_ID", "secret_access_key_env": "TEST_LEAK_SECRET"},
            )
        ),
        open_bucket(
            azure_connection(
                "leak-az-key", az_container, azurite, {"mode": "account_key", "account_key_env": "TEST_LEAK_AZ_KEY"}
            )
        ),
        open_bucket(
            azure_connection("leak-az-sas", az_container, azurite, {"mode": "sas", "sas_token_env": "TEST_LEAK_AZ_SAS"})
        ),
        open_bucket(
            azure_connection(
                "leak-az-cs",
                az_container,
                azurite,
                {"mode": "connection_string", "connection_string_env": "TEST_LEAK_AZ_CS"},
            )
        ),
        open_bucket(
            gcs_connection(
                "leak-gcs",
                gcs_status_bucket,
                fake_gcs.endpoint,
                auth={"mode": "service_account", "key_file_env": "TEST_LEAK_GCS_KEY"},
            )
        ),
    ]
    for bucket in buckets:
        texts = provoke(bucket)
        result = bucket.test()
        assert not result.ok, (bucket.connection_name, result)
        for text in texts:
            for secret in (SECRET, b64_secret):
                assert secret not in text, (bucket.connection_name, text)
