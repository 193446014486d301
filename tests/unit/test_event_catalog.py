"""A connection's `events` queue in the catalog: accepted in each provider's form, refused with the connection and the
field named when it cannot work, and its credentials held to the bucket's rules (variable names only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resources.catalog import CatalogError, dump_catalog, load_catalog

SQS = "https://sqs.eu-west-1.amazonaws.com/123456789012/bucket-events"
SUBSCRIPTION = "projects/my-project/subscriptions/bucket-events"


def entry(provider: str, events: dict[str, Any], **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": f"{provider}-conn", "provider": provider}
    if provider == "local":
        base["root"] = "."
    else:
        base["bucket"] = "media-bucket"
    if provider == "azure":
        base["options"] = {"account": "mediaacct"}
    return {**base, **fields, "events": events}


def load(tmp_path: Path, *entries: dict[str, Any]) -> Any:
    path = tmp_path / "connections.yaml"
    path.write_text(dump_catalog(list(entries)))
    return load_catalog(path)


def error_of(tmp_path: Path, *entries: dict[str, Any]) -> str:
    with pytest.raises(CatalogError) as info:
        load(tmp_path, *entries)
    return str(info.value)


def test_each_provider_takes_its_own_kind_of_queue_with_defaults(tmp_path: Path) -> None:
    catalog = load(
        tmp_path,
        entry("s3", {"queue": SQS}),
        entry("gcs", {"queue": SUBSCRIPTION, "max_messages": 50}),
        entry("azure", {"queue": "blob-events", "endpoint": "http://127.0.0.1:10001/devstoreaccount1"}),
    )
    s3 = catalog.get("s3-conn")
    assert s3.events.queue == SQS and s3.events.max_messages == 1000 and s3.events.auth is None
    assert s3.queue_connection() is s3, "without events.auth the queue is read with the bucket's credentials"
    assert catalog.get("gcs-conn").events.max_messages == 50
    assert catalog.get("azure-conn").events.endpoint.endswith(":10001/devstoreaccount1")


def test_events_auth_replaces_the_bucket_auth_for_the_queue_only(tmp_path: Path) -> None:
    keys = {"mode": "keys", "access_key_id_env": "QUEUE_KEY", "secret_access_key_env": "QUEUE_SECRET"}
    catalog = load(tmp_path, entry("s3", {"queue": SQS, "auth": keys}, auth={"mode": "default"}))
    conn = catalog.get("s3-conn")
    assert conn.auth == {"mode": "default"}
    assert conn.queue_connection().auth == keys
    assert conn.queue_connection().provider_settings().auth.access_key_id_env == "QUEUE_KEY"


@pytest.mark.parametrize(
    ("provider", "queue", "words"),
    [
        ("gcs", "projects/p/topics/bucket-events", "Pub/Sub subscription path"),
        ("gcs", "bucket-events", "projects/my-project/subscriptions/"),
        ("s3", "bucket-events", "SQS queue URL"),
        ("s3", "arn:aws:sqs:eu-west-1:123456789012:bucket-events", "SQS queue URL"),
        ("azure", "Blob_Events", "Storage Queue name"),
        ("azure", "blob--events", "Storage Queue name"),
    ],
)
def test_a_queue_of_the_wrong_kind_names_the_connection_field_and_form(
    tmp_path: Path, provider: str, queue: str, words: str
) -> None:
    message = error_of(tmp_path, entry(provider, {"queue": queue}))
    assert f"connection '{provider}-conn'" in message
    assert "field 'events'" in message and f"events.queue '{queue}'" in message
    assert words in message


def test_a_local_folder_has_no_events(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry("local", {"queue": "anything"}))
    assert "connection 'local-conn', field 'events'" in message
    assert "watch: true" in message


def test_max_messages_is_bounded_and_unknown_fields_are_refused(tmp_path: Path) -> None:
    assert "field 'events.max_messages'" in error_of(tmp_path, entry("s3", {"queue": SQS, "max_messages": 0}))
    assert "field 'events.max_messages'" in error_of(tmp_path, entry("s3", {"queue": SQS, "max_messages": 10**6}))
    assert "field 'events.queue_url'" in error_of(tmp_path, entry("s3", {"queue": SQS, "queue_url": SQS}))


def test_events_auth_holds_variable_names_never_secrets(tmp_path: Path) -> None:
    inline = {"mode": "keys", "access_key_id_env": "AKIAABCDEFGHIJKLMNOP", "secret_access_key_env": "S"}
    message = error_of(tmp_path, entry("s3", {"queue": SQS, "auth": inline}))
    assert "field 'events.auth.access_key_id_env'" in message and "inline secret" in message
    assert "AKIAABCDEFGHIJKLMNOP" not in message
    wrong_mode = error_of(tmp_path, entry("s3", {"queue": SQS, "auth": {"mode": "password"}}))
    assert "field 'events.auth'" in wrong_mode and "unknown auth mode" in wrong_mode
    missing = error_of(tmp_path, entry("azure", {"queue": "blob-events", "auth": {"mode": "sas"}}))
    assert "field 'events.auth.sas_token_env'" in missing


def test_an_endpoint_with_a_password_in_it_is_refused_without_quoting_it(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry("s3", {"queue": SQS, "endpoint": "https://user:hunter2secret@sqs.local"}))
    assert "field 'events.endpoint'" in message
    assert "hunter2secret" not in message
