"""Resumable listing pages on every provider: what the change sensor walks across ticks."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from demo import synth
from pipelines import sensors
from pipelines.runner import run_sync
from resources.catalog_resource import CatalogResource
from resources.index_resource import MediaIndex
from resources.providers import open_bucket
from resources.state import StateStore
from tests.conftest import Workspace
from tests.integration.buckets import BucketUnderTest, unique_name

pytestmark = pytest.mark.integration

KEYS = ["p/a b.jpg", "p/a-c.jpg", "p/a.jpg", "p/a/z.jpg", "p/b.png", "p/é.jpg", "p/zz/deep.jpg"]


def test_pages_resume_after_their_token_and_cover_the_listing_once(
    test_bucket: BucketUnderTest, workspace: Workspace
) -> None:
    for key in KEYS:
        test_bucket.put(key, key.encode())
    name = unique_name(test_bucket.provider)
    workspace.write_catalog(test_bucket.entry(name, prefix="p/"))
    bucket = open_bucket(CatalogResource().connection(name))

    pages, token = [], None
    while True:
        batch, token = bucket.list_page("p/", token, page_size=2)
        pages.append(batch.column("key").to_pylist())
        if token is None:
            break
    seen = [k for page in pages for k in page]
    assert sorted(seen) == sorted(KEYS) and len(seen) == len(KEYS)
    assert all(len(page) <= 2 for page in pages) and len(pages) >= 4
    assert seen == [k for b in bucket.iter_listing("p/", page_size=3) for k in b.column("key").to_pylist()]


def test_change_sensor_requests_a_sync_only_when_the_bucket_changed(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    for key in KEYS[:4]:
        test_bucket.put(key, synth.png(8, 8))
    name = unique_name(test_bucket.provider)
    workspace.write_catalog(test_bucket.entry(name, prefix="p/", watch=True))
    resources = {"catalog": CatalogResource(), "state_store": StateStore(), "index": MediaIndex()}

    def tick() -> SensorResult | SkipReason:
        return sensors.bucket_changes(build_sensor_context(instance=dagster_instance, resources=resources))

    assert isinstance(tick(), SensorResult)  # never synced
    assert run_sync(name, dagster_instance, log_level="ERROR").ok
    assert isinstance(tick(), SkipReason)
    test_bucket.put("p/new.png", synth.png(9, 9))
    result = tick()
    assert isinstance(result, SensorResult) and result.run_requests[0].partition_key == name
