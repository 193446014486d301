"""Bucket, container and account names are checked before any request, and the message names the rule broken.

A person fixing a catalog by hand needs the rule, not "invalid name": each case below breaks exactly one rule.
"""

from __future__ import annotations

import pytest

from resources.catalog import Connection, validate_provider_settings
from resources.settings.azure import azure_account_name_problem, azure_container_name_problem
from resources.settings.gcs import gcs_bucket_name_problem


@pytest.mark.parametrize(
    "name",
    [
        "abc",
        "my-bucket_01",
        "a" * 63,
        "media.example.com",
        ".".join(["a" * 63] * 3) + ".ab",  # 222 characters, every component at most 63
        "1bucket9",
    ],
)
def test_valid_gcs_names(name: str):
    assert gcs_bucket_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (None, "needs `bucket`"),
        ("", "needs `bucket`"),
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("Media", "lowercase letters, digits, '-', '_' and '.'"),
        ("media bucket", "lowercase letters, digits, '-', '_' and '.'"),
        ("-media", "start and end with a letter or digit"),
        ("media_", "start and end with a letter or digit"),
        ("a" * 64 + ".com", "each dot-separated component must be at most 63"),
        (".".join(["a" * 63] * 4), "with dots must be 3 to 222 characters"),
        ("media..example", "two adjacent periods"),
        ("192.168.5.4", "must not be an IP address"),
        ("goog-media", "reserved prefix 'goog'"),
        ("my-google-media", "'google' or a close misspelling"),
        ("my-g00gle-media", "'google' or a close misspelling"),
    ],
)
def test_gcs_names_name_the_rule_broken(name: str | None, rule: str):
    problem = gcs_bucket_name_problem(name)
    assert problem is not None and rule in problem, problem
    if name:
        assert f"'{name}'" in problem


@pytest.mark.parametrize("name", ["abc", "devstoreaccount1", "a" * 24, "0123"])
def test_valid_azure_account_names(name: str):
    assert azure_account_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (None, "needs `options.account`"),
        ("ab", "3 to 24 characters"),
        ("a" * 25, "3 to 24 characters"),
        ("DevStore", "only hold lowercase letters and digits"),
        ("dev-store", "only hold lowercase letters and digits"),
        ("dev_store", "only hold lowercase letters and digits"),
    ],
)
def test_azure_account_names_name_the_rule_broken(name: str | None, rule: str):
    problem = azure_account_name_problem(name)
    assert problem is not None and rule in problem, problem


@pytest.mark.parametrize("name", ["abc", "media-2024", "a" * 63, "1-a-2", "$root", "$web"])
def test_valid_azure_container_names(name: str):
    assert azure_container_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (None, "needs `bucket`"),
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("Media", "lowercase letters, digits and '-'"),
        ("me_dia", "lowercase letters, digits and '-'"),
        ("media.x", "lowercase letters, digits and '-'"),
        ("$logs", "lowercase letters, digits and '-'"),
        ("-media", "start with a letter or digit"),
        ("media-", "must not end with '-'"),
        ("me--dia", "consecutive '-'"),
    ],
)
def test_azure_container_names_name_the_rule_broken(name: str | None, rule: str):
    problem = azure_container_name_problem(name)
    assert problem is not None and rule in problem, problem


def conn(provider: str, bucket: str | None, **options: str) -> Connection:
    return Connection(name="media", provider=provider, bucket=bucket, options=options)  # type: ignore[arg-type]


def test_validators_prefix_the_field():
    assert validate_provider_settings(conn("gcs", "ok-bucket")) is None
    assert validate_provider_settings(conn("gcs", "Bad")) == (
        "field 'bucket': GCS bucket name 'Bad' may only hold lowercase letters, digits, '-', '_' and '.'"
    )
    assert validate_provider_settings(conn("azure", "media", account="devstore")) is None
    assert validate_provider_settings(conn("azure", "media", account="Dev")) == (
        "field 'options.account': Azure storage account name 'Dev' may only hold lowercase letters and digits"
    )
    assert validate_provider_settings(conn("azure", "me--dia", account="devstore")) == (
        "field 'bucket': Azure container name 'me--dia' must not contain consecutive '-' characters"
    )


def test_provider_settings_report_names_after_the_settings_shape():
    assert validate_provider_settings(conn("gcs", "goog-x")) == (
        "field 'bucket': GCS bucket name 'goog-x' must not begin with the reserved prefix 'goog'"
    )
    assert validate_provider_settings(conn("azure", "media")) == "field 'options.account': Field required"
    assert validate_provider_settings(conn("azure", "-media", account="devstore")) == (
        "field 'bucket': Azure container name '-media' must start with a letter or digit"
    )
    # No `auth` at all means the provider's default credential chain, for every cloud provider.
    for provider, options in (("s3", {}), ("gcs", {}), ("azure", {"account": "devstore"})):
        assert validate_provider_settings(conn(provider, "media", **options)) is None
