"""A sync through a service that throttles, fails and drops connections ends with the same index as a clean one.

Each remote provider's emulator sits behind tests/proxy.py's fault-injecting proxy. The same bucket is synced twice
under two connection names: once straight to the emulator, once through the proxy with 429/500/503 bursts, reset
connections and delays. Every fault must be absorbed by the clients' retries: the facts, violations and objects of
both connections must be identical, with no "read failed" anywhere, and the proxy must have injected every kind.
"""

from __future__ import annotations

from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance

from pipelines.runner import run_sync
from resources.bucket import MAX_RETRIES
from tests.conftest import Workspace
from tests.integration.buckets import BucketUnderTest, unique_name
from tests.integration.test_sync import PREFIX, dataset, upload
from tests.proxy import FaultPlan, FaultProxy, route_through, summarize

pytestmark = pytest.mark.integration

REMOTE = ["s3", "gcs", "azure"]
ALL_KINDS = ("503", "429", "500", "drop", "delay")
#: Columns that differ between two correct syncs: which connection, and when.
VOLATILE = frozenset({"connection", "probed_at", "first_seen", "last_seen", "updated_at"})


def upstream_of(bucket: BucketUnderTest) -> str:
    """The emulator's base URL (scheme, host and port) that the bucket's catalog entry points at."""
    endpoint = bucket.entry("x")["options"]["endpoint"]
    scheme, _, rest = endpoint.partition("://")
    return f"{scheme}://{rest.split('/')[0]}"


def step_errors(result: Any) -> list[str]:
    """Every failed step's error message with its causes: what a person reads in the run log."""
    messages = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            while error is not None:
                messages.append(error.message.strip())
                error = error.cause
    return messages


def index_state(ws: Workspace, name: str) -> dict[str, Any]:
    """What a person would read from the index about one connection, without the connection's name."""
    with ws.index.connect(read_only=True) as con:
        cur = con.execute("SELECT * FROM media WHERE connection = $c ORDER BY key", {"c": name})
        cols = [d[0] for d in cur.description]
        media = {
            row[cols.index("key")]: {c: v for c, v in zip(cols, row, strict=True) if c not in VOLATILE}
            for row in cur.fetchall()
        }
        violations = sorted(
            con.execute(
                "SELECT key, rule, severity, message FROM violations WHERE connection = $c", {"c": name}
            ).fetchall()
        )
        objects = sorted(
            con.execute("SELECT key, size, etag, deleted FROM objects WHERE connection = $c", {"c": name}).fetchall()
        )
    return {"media": media, "violations": violations, "objects": objects}


@pytest.mark.parametrize("test_bucket", REMOTE, indirect=True)
def test_sync_through_faults_matches_a_clean_sync(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    made = dataset()
    upload(test_bucket, made)
    clean, faulty = unique_name(f"{test_bucket.provider}-clean"), unique_name(f"{test_bucket.provider}-faulty")
    # Bursts of two spoiled requests every four: the listing's first attempt and its first retry are spoiled,
    # and each kind of fault comes round at least once over a sync of this dataset.
    plan = FaultPlan(every=4, burst=2, kinds=ALL_KINDS, delay_s=0.3, max_faults=40)
    with FaultProxy(upstream_of(test_bucket), provider=test_bucket.provider, plan=plan) as proxy:  # type: ignore[arg-type]
        workspace.write_catalog(
            test_bucket.entry(clean, prefix=PREFIX, profile="strict"),
            route_through(test_bucket.entry(faulty, prefix=PREFIX, profile="strict"), proxy),
        )
        first = run_sync(clean, dagster_instance, log_level="WARNING")
        assert first.ok, first.failures
        second = run_sync(faulty, dagster_instance, log_level="WARNING")
        seen = summarize(proxy.requests)
        faults = proxy.faults
    assert second.ok, (second.failures, faults, seen)

    # Every kind of fault was injected, and each was survived: nothing in the index says "read failed".
    assert set(faults) == set(ALL_KINDS), faults
    expected, got = index_state(workspace, clean), index_state(workspace, faulty)
    errors = {k: m["error"] for k, m in got["media"].items() if m["error"] and m["error"].startswith("read failed")}
    assert not errors, errors
    assert got["objects"] == expected["objects"]
    assert got["violations"] == expected["violations"]
    differing = {
        (key, col): (row.get(col), expected["media"].get(key, {}).get(col))
        for key, row in got["media"].items()
        for col in row
        if row.get(col) != expected["media"].get(key, {}).get(col)
    }
    assert not differing, differing
    assert len(got["media"]) == len(made), "objects lost"
    print(f"\n{test_bucket.provider}: faults injected and survived {faults} over requests {seen}")


@pytest.mark.parametrize("test_bucket", REMOTE, indirect=True)
def test_an_object_that_never_answers_becomes_a_read_failure_not_a_failed_sync(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    """Every request for one object answers 503, past every retry: the sync completes and says so for that object."""
    made = dataset()
    upload(test_bucket, made)
    stuck = PREFIX + "upright.jpg"
    name = unique_name(test_bucket.provider)
    plan = FaultPlan(every=10_000, burst=9_999, kinds=("503",), path_contains=stuck)
    with FaultProxy(upstream_of(test_bucket), provider=test_bucket.provider, plan=plan) as proxy:  # type: ignore[arg-type]
        workspace.write_catalog(route_through(test_bucket.entry(name, prefix=PREFIX, profile="strict"), proxy))
        outcome = run_sync(name, dagster_instance, log_level="WARNING")
        attempts = proxy.count(path_contains=stuck)
    assert outcome.ok, outcome.failures
    # Under `strict` the end-of-file check's tail read goes out beside the head read: each is tried once and retried
    # MAX_RETRIES times, then the probe gives up.
    assert attempts == 2 * (MAX_RETRIES + 1), "one try and every retry of each of the two reads, then it gave up"
    media = index_state(workspace, name)["media"]
    assert media[stuck]["error"].startswith("read failed: "), media[stuck]["error"]
    assert "503" in media[stuck]["error"] or "Service Unavailable" in media[stuck]["error"], media[stuck]["error"]
    others = {k: m["error"] for k, m in media.items() if k != stuck and (m["error"] or "").startswith("read failed")}
    assert not others, others
    assert len(media) == len(made)
    violations = set(workspace.query("SELECT key, rule FROM violations WHERE connection = $c", {"c": name}))
    assert (stuck, "readable") in violations


def test_a_listing_that_fails_past_its_retries_fails_the_run_naming_the_connection(
    moto_server: Any, workspace: Workspace, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partial listing must never be diffed as deletions: the run fails, and the message names the connection."""
    from tests.integration.buckets import S3TestBucket

    # botocore's own backoff (up to 2^n s, jittered) would only make this test slow; the attempts are what it proves.
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0.01)
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    bucket.put(PREFIX + "a.jpg", dataset()["upright.jpg"].data)
    name = unique_name("s3-down")
    plan = FaultPlan(every=10_000, burst=9_999, kinds=("503",))
    with FaultProxy(moto_server.endpoint, provider="s3", plan=plan) as proxy:
        workspace.write_catalog(route_through(bucket.entry(name, prefix=PREFIX), proxy))
        outcome = run_sync(name, dagster_instance, log_level="CRITICAL", only=["object_listing"])
        attempts = proxy.count(kind="list")
    assert not outcome.ok
    assert attempts == MAX_RETRIES + 1, "one try and every retry, then the run gave up"
    message = " ".join(step_errors(outcome.result))
    assert f"connection '{name}': listing s3://{bucket.bucket}/{PREFIX} failed after {MAX_RETRIES + 1} attempts" in (
        message
    ), message
