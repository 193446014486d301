"""No secret reaches a log line, run metadata, the index, a manifest, a snapshot or anything the CLI prints.

Each provider gets distinctive secret values; a real sync and failing connection tests run through the CLI against a
real Dagster home; then every byte written under DAGSTER_HOME and BUCKET_SYNC_HOME, and every byte printed, is
searched for each secret (raw and URL-encoded).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import boto3
import pytest

from demo import synth
from resources.catalog import dump_catalog
from tests.conftest import Workspace
from tests.servers import Server, free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "bucket-sync")


def put_dataset(put: Any) -> None:
    put("a/upright.jpg", synth.jpeg(64, 48, orientation=1))
    put("a/rotated.jpg", synth.jpeg(64, 48, orientation=6))
    put("b/clip.mp4", synth.mp4())


def key_json_with_a_long_segment() -> tuple[str, str]:
    """A real-looking service-account key JSON, as a person pastes it into a variable meant for its path.

    Used as a path, it fails with "File name too long: '<the key>'" only when one '/'-separated segment is longer
    than NAME_MAX (shorter segments just make a missing file); a fresh RSA key has such a segment about half the
    time, so keys are drawn until one does. Returns the JSON and a line from the middle of its PEM body.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    name_max = os.pathconf("/", "PC_NAME_MAX")
    for _ in range(64):
        pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
        text = json.dumps(
            {
                "type": "service_account",
                "project_id": "test",
                "private_key_id": uuid.uuid4().hex + "00000000",
                "private_key": pem,
                "client_email": "bucket-sync@test.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
        if max(len(segment.encode()) for segment in text.split("/")) > name_max:
            return text, pem.splitlines()[5]
    raise AssertionError("no key with a segment longer than NAME_MAX in 64 draws")


def all_bytes(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_secrets_never_leave_the_process(
    workspace: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_server: Server,
    azurite: Server,
    azure_admin: Any,
    fake_gcs: Server,
    gcs_admin: Any,
    service_account_file: Path,
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    token = uuid.uuid4().hex
    s3_secret, s3_session = f"S3SECRET{token}", f"S3SESSION{token}"
    wrong_azure_key = "V3JvbmdLZXk" + token + "=="  # base64-shaped, distinctive, rejected by Azurite

    # S3 on moto: moto accepts any key, so the distinctive secret is really sent, signed, and used.
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )
    s3_bucket = f"hyg-{token[:10]}"
    s3.create_bucket(Bucket=s3_bucket)
    put_dataset(lambda k, d: s3.put_object(Bucket=s3_bucket, Key=k, Body=d))
    monkeypatch.setenv("HYG_S3_KEY", f"AKIDHYG{token[:8]}")
    monkeypatch.setenv("HYG_S3_SECRET", s3_secret)
    monkeypatch.setenv("HYG_S3_SESSION", s3_session)
    s3_auth = {
        "mode": "keys",
        "access_key_id_env": "HYG_S3_KEY",
        "secret_access_key_env": "HYG_S3_SECRET",
        "session_token_env": "HYG_S3_SESSION",
    }

    # Azure on Azurite: a read+list SAS (its signature is the secret), and a wrong account key for a failing test.
    container = azure_admin.create_container(f"hyg-{token[:10]}")
    put_dataset(lambda k, d: container.upload_blob(k, d))
    sas = generate_container_sas(
        azurite.extra["account"],
        container.container_name,
        account_key=azurite.extra["key"],
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    sas_sig = parse_qs(sas)["sig"][0]
    monkeypatch.setenv("HYG_AZURE_SAS", sas)
    monkeypatch.setenv("HYG_AZURE_WRONG_KEY", wrong_azure_key)
    monkeypatch.setenv("HYG_AZURE_KEY", azurite.extra["key"])
    azure_opts = {"account": azurite.extra["account"], "endpoint": azurite.extra["blob_endpoint"]}

    # GCS on fake-gcs-server with a service-account key file: its private key is the secret.
    gcs_bucket = gcs_admin.create_bucket(f"hyg-{token[:10]}")
    put_dataset(lambda k, d: gcs_bucket.blob(k).upload_from_string(d))
    monkeypatch.setenv("HYG_GCS_KEY_FILE", str(service_account_file))
    private_key = json.loads(service_account_file.read_text())["private_key"]
    key_body = private_key.splitlines()[5]  # a line from the middle of the PEM body

    # The same key given as content where its path belongs: the mistake must be named, the key never shown.
    key_content, content_body = key_json_with_a_long_segment()
    monkeypatch.setenv("HYG_GCS_KEY_CONTENT", key_content)

    workspace.write_catalog(
        {"name": "s3-ok", "provider": "s3", "bucket": s3_bucket, "auth": s3_auth,
         "options": {"endpoint": moto_server.endpoint, "path_style": True}},
        {"name": "s3-closed", "provider": "s3", "bucket": s3_bucket, "auth": s3_auth,
         "options": {"endpoint": f"http://127.0.0.1:{free_port()}", "path_style": True}},
        {"name": "s3-missing", "provider": "s3", "bucket": "no-such-bucket-hyg", "auth": s3_auth,
         "options": {"endpoint": moto_server.endpoint, "path_style": True}},
        {"name": "az-ok", "provider": "azure", "bucket": container.container_name, "options": azure_opts,
         "auth": {"mode": "sas", "sas_token_env": "HYG_AZURE_SAS"}},
        {"name": "az-wrong-key", "provider": "azure", "bucket": container.container_name, "options": azure_opts,
         "auth": {"mode": "account_key", "account_key_env": "HYG_AZURE_WRONG_KEY"}},
        {"name": "az-missing", "provider": "azure", "bucket": "no-such-container", "options": azure_opts,
         "auth": {"mode": "account_key", "account_key_env": "HYG_AZURE_KEY"}},
        {"name": "gcs-ok", "provider": "gcs", "bucket": gcs_bucket.name,
         "options": {"endpoint": fake_gcs.endpoint, "project": "test"},
         "auth": {"mode": "service_account", "key_file_env": "HYG_GCS_KEY_FILE"}},
        {"name": "gcs-key-content", "provider": "gcs", "bucket": gcs_bucket.name,
         "options": {"endpoint": fake_gcs.endpoint, "project": "test"},
         "auth": {"mode": "service_account", "key_file_env": "HYG_GCS_KEY_CONTENT"}},
    )  # fmt: skip

    dagster_home = tmp_path / "dagster-home"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "COLUMNS": "200"}
    printed: list[str] = []

    def cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [CLI, *args], capture_output=True, text=True, env={**env, **extra_env}, timeout=300, check=False
        )
        printed.extend([done.stdout, done.stderr])
        return done

    for name in ("s3-ok", "az-ok", "gcs-ok"):
        done = cli("sync", name)
        assert done.returncode == 0, done.stderr
        assert "exif_orientation 1" in done.stdout
        assert cli("preview", name, "--json").returncode == 0
        assert json.loads(cli("test", name, "--json").stdout)["status"] == "AVAILABLE"
    statuses = {name: json.loads(cli("test", name, "--json").stdout)["status"] for name in
                ("s3-closed", "s3-missing", "az-wrong-key", "az-missing")}  # fmt: skip
    assert statuses == {
        "s3-closed": "UNREACHABLE",
        "s3-missing": "NOT_FOUND",
        "az-wrong-key": "FORBIDDEN",
        "az-missing": "NOT_FOUND",
    }
    failed_sync = cli("sync", "s3-closed")
    assert failed_sync.returncode != 0

    key_test = json.loads(cli("test", "gcs-key-content", "--json").stdout)
    assert key_test["status"] == "MISCONFIGURED"
    assert "HYG_GCS_KEY_CONTENT (read for auth.key_file_env) holds what looks like key content" in key_test["detail"]
    key_sync = cli("sync", "gcs-key-content")
    assert key_sync.returncode != 0
    assert "holds what looks like key content, not a path" in key_sync.stderr, key_sync.stderr

    # A password in an endpoint URL is refused by the catalog, by field, before anything runs or is recorded.
    url_password = f"URLPASS{token}"
    url_catalog = tmp_path / "url-catalog.yaml"
    url_catalog.write_text(
        dump_catalog([
            {"name": "s3-url-password", "provider": "s3", "bucket": s3_bucket, "auth": s3_auth,
             "options": {"endpoint": moto_server.endpoint.replace("://", f"://minio:{url_password}@"),
                         "path_style": True}},
        ])
    )  # fmt: skip
    for command in (("test", "s3-url-password", "--json"), ("preview", "s3-url-password"), ("sync", "s3-url-password")):
        refused = cli(*command, BUCKET_SYNC_CATALOG=str(url_catalog))
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        assert "connection 's3-url-password', field 'options.endpoint': the URL holds a user name or password" in (
            refused.stderr
        ), refused.stderr

    written = all_bytes(dagster_home) + all_bytes(workspace.home)
    assert b"exif_orientation" in written, "the scan must cover the event log and the index"
    said = "\n".join(printed)
    secrets = (s3_secret, s3_session, sas_sig, wrong_azure_key, azurite.extra["key"], key_body, content_body)
    for secret in (*secrets, url_password):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            assert form not in said, f"a secret was printed: {secret[:6]}..."
            assert form.encode() not in written, f"a secret was written to disk: {secret[:6]}..."
