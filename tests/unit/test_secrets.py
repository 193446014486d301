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


def _shipped_advice() -> list[str]:
    """Every remedy the providers ship, and the Azure advice that quotes SAS permissions (CORS and write probes)."""
    from resources.settings import azure, gcs

    return [
        *azure.AUTH_REMEDY.values(),
        azure.ROLE_REMEDY,
        *gcs.AUTH_REMEDY.values(),
        "or use an account SAS with service-level read (ss=b srt=s sp=r); a sync does not need it",
        "or use a SAS with Read, List, Create and Write (sp=rlcw) on the container",
    ]


@pytest.mark.parametrize("advice", _shipped_advice())
def test_every_shipped_remedy_survives_scrubbing_whole(advice: str) -> None:
    """The connection test prints its remedy through `scrub`: "(sp=rl)" must not come out as "(sp=***"."""
    assert scrub(advice) == advice
    assert scrub(f"FORBIDDEN: {advice}\n  what to do: {advice}") == f"FORBIDDEN: {advice}\n  what to do: {advice}"


@pytest.mark.parametrize(
    "token",
    [
        "sv=2024-11-04&ss=b&srt=co&sp=rl&se=2026-12-31T00:00:00Z&st=2026-01-01T00:00:00Z&spr=https&sig=QWxhZGRpbg%3D%3D",
        "?sv=2024-11-04&sp=rl&sig=QWxhZGRpbg%3D%3D",
        "se=2026-12-31&sp=rl&sv=2024-11-04&sr=c&sig=QWxhZGRpbg%3D%3D",
    ],
)
def test_a_sas_token_beside_the_advice_loses_its_signature_and_the_advice_stays(token: str) -> None:
    advice = "issue a SAS with Read and List (sp=rl) on the container"
    text = f"GET https://acct.blob.core.windows.net/c?restype=container&{token.lstrip('?')} failed: {advice}"
    cleaned = scrub(text)
    assert "QWxhZGRpbg" not in cleaned and cleaned.endswith(advice), cleaned
    assert "sig=***" in cleaned
