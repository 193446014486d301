"""A variable that should hold a path but holds the key itself is refused by name, and the key is never quoted.

The slip is common (`export KEY_FILE="$(cat key.json)"`), and using the content as a path puts it in an OSError's
text ("File name too long: '{...private_key...}'"), which Dagster then stores in its run records and compute logs.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from resources.bucket import ConnectionMisconfigured
from resources.catalog import Connection
from resources.providers import open_bucket
from resources.secrets import SecretNotAPath, looks_like_key_content, resolve_env_path, scrub


def key_json(seed: str) -> tuple[str, str]:
    """A service-account key as Google issues it (shape, not a usable key), and one line of its PEM body."""
    body = base64.b64encode((seed * 400).encode()).decode()[:1600]
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"
    info = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": seed.encode().hex()[:40].ljust(40, "0"),
        "private_key": pem,
        "client_email": "sync@test.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return json.dumps(info), lines[7]


@pytest.mark.parametrize(
    ("value", "content"),
    [
        ('{"type": "service_account", "private_key": "x"}', True),
        ('  {\n  "type": "service_account"\n}', True),
        ("-----BEGIN PRIVATE KEY-----\nMIIE", True),
        ("a" * 5000, True),
        ("/home/me/keys/sa.json", False),
        ("~/keys/sa key (old).json", False),
        ("C:\\keys\\sa.json", False),
    ],
)
def test_key_content_is_told_from_a_path(value: str, content: bool) -> None:
    assert looks_like_key_content(value) is content


def test_key_content_in_a_path_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    text, pem_line = key_json("resolve-env-path")
    monkeypatch.setenv("BS_KEY_AS_CONTENT", text)
    with pytest.raises(SecretNotAPath) as info:
        resolve_env_path("BS_KEY_AS_CONTENT", connection="c", field="auth.key_file_env")
    message = str(info.value)
    assert message == (
        "connection 'c': the variable BS_KEY_AS_CONTENT (read for auth.key_file_env) holds what looks like key "
        "content, not a path; save the key to a file and set BS_KEY_AS_CONTENT to that file's path"
    )
    assert pem_line not in message
    # Any later echo of it, as an OSError would quote it (repr) or Dagster would store it (JSON), is scrubbed.
    for echo in (f"File name too long: {text!r}", json.dumps({"error": text}), f"line: {pem_line}"):
        assert pem_line not in scrub(echo)


def gcs_connection(var: str, base_dir: Path) -> Connection:
    return Connection(
        name="gcs-key",
        provider="gcs",
        bucket="my-bucket",
        options={"endpoint": "http://127.0.0.1:1", "project": "test"},
        auth={"mode": "service_account", "key_file_env": var},
        base_dir=str(base_dir),
    )


def test_gcs_key_file_variable_holding_the_key_is_misconfigured_without_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text, pem_line = key_json("gcs-from-connection")
    monkeypatch.setenv("BS_GCS_KEY_FILE", text)
    with pytest.raises(ConnectionMisconfigured) as info:
        open_bucket(gcs_connection("BS_GCS_KEY_FILE", tmp_path))
    message = str(info.value)
    assert "connection 'gcs-key'" in message and "auth.key_file_env" in message
    assert "BS_GCS_KEY_FILE" in message and "holds what looks like key content, not a path" in message
    assert pem_line not in message and "BEGIN PRIVATE KEY" not in message


def test_gcs_key_file_path_the_system_cannot_use_is_not_quoted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    unusable = "k" * (os.pathconf("/", "PC_NAME_MAX") + 1)  # one path component too long: ENAMETOOLONG
    monkeypatch.setenv("BS_GCS_LONG_PATH", unusable)
    with pytest.raises(ConnectionMisconfigured) as info:
        open_bucket(gcs_connection("BS_GCS_LONG_PATH", tmp_path))
    message = str(info.value)
    assert "BS_GCS_LONG_PATH (named by auth.key_file_env) holds a path the system cannot use" in message
    assert "k" * 50 not in message


def test_adc_variable_holding_the_key_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text, pem_line = key_json("gcs-adc")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", text)
    conn = gcs_connection("UNUSED", tmp_path).model_copy(update={"auth": {"mode": "default"}})
    with pytest.raises(ConnectionMisconfigured) as info:
        open_bucket(conn)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(info.value) and pem_line not in str(info.value)
