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
