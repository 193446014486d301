"""Known secrets and credential-shaped URL parameters never survive `scrub`."""

from __future__ import annotations

import pytest

from resources.secrets import MissingSecret, remember, resolve_env, scrub


def test_resolved_secret_is_scrubbed_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BS_TEST_SECRET", "s3cr3t-value-4242")
    value = resolve_env("BS_TEST_SECRET", connection="c", field="auth.secret_env")
    assert value == "s3cr3t-value-4242"
    assert scrub(f"GET failed with key {value} and again {value}") == "GET failed with key *** and again ***"


def test_missing_variable_names_connection_variable_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BS_NOT_SET", raising=False)
    with pytest.raises(MissingSecret, match=r"connection 'c': environment variable BS_NOT_SET \(named by auth.x_env\)"):
        resolve_env("BS_NOT_SET", connection="c", field="auth.x_env")


@pytest.mark.parametrize(
    "text",
    [
        "https://acct.blob.core.windows.net/c/k?sv=2024-01-01&sp=rl&sig=abcDEF123%2Bxyz",
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFyYmF6cXV4;EndpointSuffix=x",
        "https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA/x",
    ],
)
def test_credential_shaped_parameters_are_scrubbed(text: str) -> None:
    cleaned = scrub(text)
    for secret in ("abcDEF123", "Zm9vYmFyYmF6cXV4", "deadbeefcafe"):
        assert secret not in cleaned


def test_short_values_are_not_registered() -> None:
    remember("ab")
    assert scrub("a tab b") == "a tab b"


@pytest.mark.parametrize(
    "advice",
    [
        "or use a SAS with Read and List permissions (sp=rl)",
        "issue a SAS with Read and List (sp=rl) on the container, valid now (se= in the future, sv=2024-01-01)",
        "set password=... in the config file? no: name a variable in password_env",
        "the signature=abc in your notes is not a URL",
    ],
)
def test_advice_that_merely_looks_like_a_parameter_is_left_alone(advice: str) -> None:
    assert scrub(advice) == advice


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://a.blob.core.windows.net/c?restype=container&sp=rl&sig=SiGvAlUe123 failed", "SiGvAlUe123"),
        ("<Url>https://a/c?sv=1&amp;sig=EsCaPeDsIg42</Url>", "EsCaPeDsIg42"),
        ("redirect=https%3A%2F%2Fa%2Fc%3Fsv%3D1%26sig%3DpErCeNtSiG77", "pErCeNtSiG77"),
        ("AccountKey=StArTkEy99;AccountName=a", "StArTkEy99"),
        ("cannot parse:\nPassword=LiNeStArT55;Server=x", "LiNeStArT55"),
    ],
)
def test_values_in_url_and_connection_string_context_are_scrubbed(text: str, secret: str) -> None:
    assert secret not in scrub(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no answer from http://minio:pAsSw0rd@127.0.0.1:9000/b", "no answer from http://***@127.0.0.1:9000/b"),
        ("https://tok3nOnly@host/x and s3://k:s@b/k", "https://***@host/x and s3://***@b/k"),
        ("http://user:p@ss@host:1/", "http://***@host:1/"),
        (
            "write to ops@example.com, see https://example.com/@team",
            "write to ops@example.com, see https://example.com/@team",
        ),
    ],
)
def test_url_user_info_is_scrubbed(text: str, expected: str) -> None:
    assert scrub(text) == expected
