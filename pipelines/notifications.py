"""Webhook notifications: tell a person when a sync fails, is blocked by `listing_collapse`, or finds new violations.

Built on Dagster's run-status sensors, so the daemon's own cursor (the last run-status event seen) makes each run
notified once, and a daemon that was down catches up on the runs it missed. The webhook URL comes from an environment
variable that the catalog names (`notify.webhook_env`), because it usually carries a token; the URL is remembered as
a secret, so `scrub` keeps it out of every log line, and no payload field is written without passing `scrub`.

"New violations" are the (key, rule) pairs of a sync that the connection's previous committed sync did not report:
`media_index` counts them in its index transaction, against the rows it is about to replace, and reports the count
as `new_violations` materialization metadata, which is what the sensor reads (sensors never open the index).

A failure to notify is logged and swallowed: a webhook outage must never fail a sensor tick, let alone a sync.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG

from pipelines.jobs import sync_job
from resources.catalog import CatalogError
from resources.catalog_resource import CatalogResource
from resources.secrets import remember, scrub

#: Tries per notification, and the pause before the second try (doubling after): 1 s, then 2 s.
TRIES = 3
FIRST_BACKOFF_S = 1.0
TIMEOUT_S = 10.0
#: The base URL of the Dagster UI; with it, each payload links to its run. Without it, the link is left out.
WEBSERVER_URL_ENV = "DAGSTER_WEBSERVER_URL"


@dataclass
class Notice:
    """One notification: what happened to one run of one connection."""

    connection: str
    run_id: str
    status: str  # failure, blocked or new_violations: the names the catalog's `notify.on` uses
    reason: str
    counts: dict[str, int] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON body, every text scrubbed, with a link to the run when the UI's address is known."""
        body: dict[str, Any] = {
            "source": "bucket-sync",
            "connection": self.connection,
            "run_id": self.run_id,
            "status": self.status,
            "reason": scrub(self.reason),
            "counts": dict(self.counts),
        }
        base = os.environ.get(WEBSERVER_URL_ENV, "").strip().rstrip("/")
        if base:
            body["run_url"] = scrub(f"{base}/runs/{self.run_id}")
        return body


def remember_webhook(url: str) -> None:
    """Treat the webhook URL as the secret it usually is: the whole URL, its path and its query (the token sits in
    one of them), so neither an echo of the URL nor of its tail reaches a log line."""
    remember(url)
    parts = urlsplit(url)
    remember(parts.path)
    remember(parts.query)
    for segment in parts.path.split("/"):
        if len(segment) >= 16:  # a token-like segment; short ones ("hooks", "services") are ordinary words
            remember(segment)


def post_json(
    url: str, body: dict[str, Any], log: Callable[[str], None], *, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """POST `body` as JSON to `url`; True when the webhook accepted it (2xx).

    A 5xx answer or a connection error is tried again, up to TRIES times, pausing FIRST_BACKOFF_S and doubling;
    a 4xx is the webhook saying no, so it is not retried. Every outcome is logged through `log`, scrubbed, and
    nothing is raised: a notification that cannot be delivered must not fail anything else.
    """
    data = json.dumps(body).encode()
    delay = FIRST_BACKOFF_S
    for attempt in range(1, TRIES + 1):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json", "User-Agent": "bucket-sync"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read()
            return True
        except urllib.error.HTTPError as exc:
            problem, retry = f"the webhook answered HTTP {exc.code}", exc.code >= 500
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            problem, retry = f"the webhook could not be reached ({type(exc).__name__}: {reason})", True
        if not retry or attempt == TRIES:
            tail = "not retried (a 4xx is final)" if not retry else f"gave up after {attempt} tries"
            log(scrub(f"notification for run {body.get('run_id')} not delivered: {problem}; {tail}"))
            return False
        log(scrub(f"notification for run {body.get('run_id')}: {problem}; trying again in {delay:g} s"))
        sleep(delay)
        delay *= 2
    return False


def _blocked_by_collapse(instance: DagsterInstance, run_id: str) -> tuple[str, dict[str, int]] | None:
    """The failed `listing_collapse` evaluation of the run, as (description, counts), or None if it did not block."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is None or evaluation.check_name != "listing_collapse" or evaluation.passed:
            continue
        counts = {k: v.value for k, v in evaluation.metadata.items() if k in ("listed", "last_good")}
        return evaluation.description or "the listing lost more than half of the last good one", counts
    return None


def _failure_reason(instance: DagsterInstance, run_id: str) -> str:
    """A sentence from the run's first step failure (already scrubbed by `scrubbed_errors`; scrubbed again)."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = event.event_specific_data.error if event and event.event_specific_data else None
        if error is not None:
            first = str(error.message).strip().splitlines()[0] if str(error.message).strip() else ""
            return f"step {event.step_key} failed: {first}" if first else f"step {event.step_key} failed"
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
        if entry.dagster_event and entry.dagster_event.message:
            return entry.dagster_event.message
    return "the sync run failed"


def _index_counts(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    """The counts `media_index` reported for this run (empty if the index step did not materialize)."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is None or materialization.asset_key != AssetKey("media_index"):
            continue
        return {k: int(v.value) for k, v in materialization.metadata.items() if isinstance(v.value, int)}
    return {}


def notice_for(instance: DagsterInstance, run: DagsterRun) -> Notice | None:
    """What there is to tell about a finished sync run, or None (a clean sync, or one without a connection)."""
    name = run.tags.get(PARTITION_NAME_TAG)
    if not name:
        return None
    blocked = _blocked_by_collapse(instance, run.run_id)
    if blocked is not None:
        description, counts = blocked
        return Notice(
            name, run.run_id, "blocked", f"sync of '{name}' blocked by listing_collapse: {description}", counts
        )
    if run.status == DagsterRunStatus.FAILURE:
        reason = f"sync of '{name}' failed: {_failure_reason(instance, run.run_id)}"
        return Notice(name, run.run_id, "failure", reason)
    counts = _index_counts(instance, run.run_id)
    new = counts.get("new_violations", 0)
    if new > 0:
        total = counts.get("violations", new)
        reason = f"sync of '{name}' found {new} new violation(s) ({total} in all); see the violations table"
        keep = ("listed", "probed", "accepted", "violations", "new_violations", "deleted", "moved")
        return Notice(name, run.run_id, "new_violations", reason, {k: counts[k] for k in keep if k in counts})
    return None


def notify_run(
    context: RunStatusSensorContext, catalog: CatalogResource, *, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Post the notice for the run in `context` to its connection's webhook, if it asked for that kind. Never raises.

    Returns None whatever happens, skips included: a run-status sensor whose function returns a value (even a
    SkipReason) handles one run per tick, so runs that finished together would be notified one tick apart.
    """
    run = context.dagster_run
    try:
        notice = notice_for(context.instance, run)
        if notice is None:
            context.log.debug(f"run {run.run_id}: nothing to notify")
            return None
        try:
            settings = catalog.load().notify_for(notice.connection)
        except CatalogError:
            context.log.warning(f"run {run.run_id}: the catalog is invalid, so its webhook is unknown; not notified")
            return None
        if settings is None or notice.status not in settings.on:
            context.log.debug(f"run {run.run_id}: '{notice.connection}' asks for no {notice.status} notification")
            return None
        url = os.environ.get(settings.webhook_env, "").strip()
        if not url:
            context.log.warning(
                f"run {run.run_id}: {notice.status} not notified: {settings.webhook_env} (notify.webhook_env of "
                f"'{notice.connection}') is not set; export it with the webhook URL"
            )
            return None
        remember_webhook(url)
        if post_json(url, notice.payload(), context.log.warning, sleep=sleep):
            context.log.info(f"run {run.run_id}: {notice.status} of '{notice.connection}' notified")
    except Exception as exc:  # a notification must never fail the sensor, let alone anything else
        context.log.error(scrub(f"run {run.run_id}: notification failed: {type(exc).__name__}: {exc}"))
    return None


@run_failure_sensor(
    name="sync_failure_notifications",
    monitored_jobs=[sync_job],
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Posts a JSON summary to the connection's webhook (catalog `notify`) when a sync fails, or is blocked by "
        "listing_collapse. Its cursor is the last run event seen, so each run is notified once."
    ),
)
def sync_failure_notifications(context: RunFailureSensorContext, catalog: CatalogResource) -> None:
    notify_run(context, catalog)


@run_status_sensor(
    name="sync_success_notifications",
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[sync_job],
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Posts a JSON summary to the connection's webhook (catalog `notify`) when a finished sync found violations "
        "its previous sync did not have, or was blocked by listing_collapse. Each run is notified once."
    ),
)
def sync_success_notifications(context: RunStatusSensorContext, catalog: CatalogResource) -> None:
    notify_run(context, catalog)
