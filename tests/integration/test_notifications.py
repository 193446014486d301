"""Webhook notifications, end to end: real syncs on the local provider, a real Dagster instance, the run-status
sensors evaluated through their own cursor, and a real HTTP server on 127.0.0.1 that records what it is sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance, SensorDefinition, SensorEvaluationContext
from dagster._core.execution.build_resources import wrap_resources_for_execution

from demo import synth
from pipelines import notifications
from pipelines.definitions import defs
from pipelines.notifications import sync_failure_notifications, sync_success_notifications
from pipelines.origin import code_location_origin
from pipelines.runner import run_sync
from resources.catalog import load_catalog
from resources.catalog_resource import CatalogResource
from resources.secrets import resolve_env
from tests.conftest import Workspace
from tests.integration.buckets import LocalTestBucket
from tests.webhook_server import QUERY_TOKEN, TOKEN, Webhook

REPOSITORY = defs.get_repository_def()

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    hook = Webhook()
    monkeypatch.setenv("BUCKET_SYNC_WEBHOOK_URL", hook.url)
    monkeypatch.setenv(notifications.WEBSERVER_URL_ENV, "http://dagster.example:3000/")
    try:
        yield hook
    finally:
        hook.close()


class Sensors:
    """Both notification sensors, ticked as the daemon ticks them: each through its own cursor. What they log goes
    to `handler` too (pytest's caplog), so a test can read it: a sensor's logger is not in Python's logger tree."""

    def __init__(self, instance: DagsterInstance, handler: logging.Handler) -> None:
        self.instance = instance
        self.handler = handler
        self.cursors: dict[str, str | None] = {}
        self.tick()  # a run-status sensor's first tick only places its cursor at the newest event

    def tick(self) -> None:
        sensor: SensorDefinition
        for sensor in (sync_failure_notifications, sync_success_notifications):
            # As the daemon evaluates it: in the code location that the CLI's runs name as their origin, since a
            # run-status sensor hears only the runs of its own code location and repository.
            context = SensorEvaluationContext(
                instance_ref=None,
                instance=self.instance,
                cursor=self.cursors.get(sensor.name),
                repository_def=REPOSITORY,
                repository_name=REPOSITORY.name,
                resources=wrap_resources_for_execution({"catalog": CatalogResource()}),
                code_location_origin=code_location_origin(),
            )
            context.log.addHandler(self.handler)
            self.cursors[sensor.name] = sensor.evaluate_tick(context).cursor


def write_catalog(ws: Workspace, *entries: dict[str, Any], notify: dict[str, Any] | None = None) -> None:
    raw: dict[str, Any] = {"connections": list(entries)}
    if notify is not None:
        raw = {"notify": notify, **raw}
    ws.catalog.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_failure_blocked_and_new_violations_each_post_once_and_nothing_else(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    webhook: Webhook,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    bucket = LocalTestBucket(tmp_path / "bucket")
    for i in range(6):
        bucket.put(f"ok-{i}.jpg", synth.jpeg(64 + i, 48, orientation=1))
    bucket.put("rotated.jpg", synth.jpeg(64, 48, orientation=6))  # strict profile: an EXIF-orientation violation
    # The catalog-wide default names the webhook; this connection inherits it.
    write_catalog(workspace, bucket.entry("photos"), notify={"webhook_env": "BUCKET_SYNC_WEBHOOK_URL"})
    assert load_catalog(workspace.catalog).notify_for("photos") is not None
    sensors = Sensors(dagster_instance, caplog.handler)

    # First sync: its one violation is new (there was no previous sync). The first post is answered 500: retried.
    webhook.answers = [500]
    assert run_sync("photos", dagster_instance, log_level="ERROR").ok
    sensors.tick()
    (first,) = webhook.posts
    assert first["status"] == "new_violations" and first["connection"] == "photos"
    assert first["counts"]["new_violations"] == 1 and first["counts"]["violations"] == 1
    assert first["run_url"] == f"http://dagster.example:3000/runs/{first['run_id']}"
    assert webhook.answers == []  # the 500 was answered, and the retry delivered
    assert "HTTP 500" in caplog.text and "trying again" in caplog.text

    # Unchanged re-sync: the same violation is not new, so nothing is posted; ticking again re-notifies nothing.
    assert run_sync("photos", dagster_instance, log_level="ERROR").ok
    sensors.tick()
    assert len(webhook.posts) == 1

    # An unchanged re-sync, then one more rotated image (one new violation, two in all), both before one tick: the
    # tick handles both runs, the quiet one included, and posts once.
    assert run_sync("photos", dagster_instance, log_level="ERROR").ok
    bucket.put("rotated-2.jpg", synth.jpeg(80, 48, orientation=8))
    assert run_sync("photos", dagster_instance, log_level="ERROR").ok
    sensors.tick()
    assert [p["status"] for p in webhook.posts] == ["new_violations", "new_violations"]
    sensors.tick()
    assert len(webhook.posts) == 2
    assert webhook.posts[1]["counts"]["new_violations"] == 1 and webhook.posts[1]["counts"]["violations"] == 2

    # Most objects vanish: listing_collapse blocks the sync, and that is posted.
    for i in range(6):
        bucket.delete(f"ok-{i}.jpg")
    blocked = run_sync("photos", dagster_instance, log_level="ERROR")
    assert blocked.blocked_by is not None
    sensors.tick()
    assert webhook.posts[2]["status"] == "blocked"
    assert "listing_collapse" in webhook.posts[2]["reason"] and webhook.posts[2]["counts"]["last_good"] == 8

    # A failing sync: the index is not a DuckDB file, at a path that holds a secret the connection resolved.
    monkeypatch.setenv("PHOTOS_SECRET", "s3cr3t-index-path-7d2a9e")
    secret = resolve_env("PHOTOS_SECRET", connection="photos", field="auth.token_env")
    broken = tmp_path / f"index-{secret}.duckdb"
    broken.write_bytes(b"not a duckdb file " * 64)
    monkeypatch.setenv("BUCKET_SYNC_INDEX", str(broken))
    failed = run_sync("photos", dagster_instance, allow_collapse=True, log_level="ERROR")
    assert not failed.result.success
    sensors.tick()
    sensors.tick()
    assert [p["status"] for p in webhook.posts] == ["new_violations", "new_violations", "blocked", "failure"]
    failure = webhook.posts[3]
    assert failure["run_id"] == failed.result.run_id and "media_index" in failure["reason"]

    sent = json.dumps(webhook.posts)
    for text in (secret, TOKEN, QUERY_TOKEN):
        assert text not in sent
    out = capsys.readouterr()
    logs = caplog.text + out.out + out.err
    assert TOKEN not in logs and QUERY_TOKEN not in logs and secret not in logs
    assert all(path.startswith(f"/hooks/{TOKEN}") for path in webhook.paths)  # the URL reached the server intact


def test_a_connection_chooses_its_events_and_a_refusing_webhook_is_not_retried(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    webhook: Webhook,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bucket = LocalTestBucket(tmp_path / "bucket")
    bucket.put("rotated.jpg", synth.jpeg(64, 48, orientation=6))
    quiet = {"webhook_env": "BUCKET_SYNC_WEBHOOK_URL", "on": ["failure"]}
    write_catalog(workspace, bucket.entry("quiet", notify=quiet), bucket.entry("loud"), notify=None)
    sensors = Sensors(dagster_instance, caplog.handler)
    assert run_sync("quiet", dagster_instance, log_level="ERROR").ok  # new violations, but it asked for failures only
    assert run_sync("loud", dagster_instance, log_level="ERROR").ok  # no webhook at all
    sensors.tick()
    assert webhook.posts == []

    # A webhook that refuses (4xx) is not retried; the refusal is logged without the URL's token.
    write_catalog(workspace, bucket.entry("quiet"), notify={"webhook_env": "BUCKET_SYNC_WEBHOOK_URL"})
    bucket.put("rotated-2.jpg", synth.jpeg(80, 48, orientation=8))
    webhook.answers = [404, 200]
    assert run_sync("quiet", dagster_instance, log_level="ERROR").ok
    sensors.tick()
    assert webhook.posts == [] and webhook.answers == [200]
    assert "HTTP 404" in caplog.text and "not retried" in caplog.text and TOKEN not in caplog.text


def test_the_catalog_takes_a_variable_name_never_the_webhook_url(workspace: Workspace) -> None:
    from resources.catalog import CatalogError

    write_catalog(
        workspace,
        {"name": "x", "provider": "local", "root": ".", "notify": {"webhook_env": f"https://hooks.example/{TOKEN}"}},
    )
    with pytest.raises(CatalogError) as err:
        load_catalog(workspace.catalog)
    assert "notify" in str(err.value) and TOKEN not in str(err.value)
    write_catalog(workspace, notify={"webhook_env": "OK_NAME", "on": ["sometimes"]})
    with pytest.raises(CatalogError, match="notify"):
        load_catalog(workspace.catalog)
