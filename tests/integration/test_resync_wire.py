"""An unchanged re-sync reads no object: counted at the emulator's side of the wire, not by our own counters."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import DagsterInstance

from demo import synth
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.integration.buckets import AzureTestBucket, GCSTestBucket, S3TestBucket, unique_name
from tests.proxy import FaultProxy, route_through

pytestmark = pytest.mark.integration


@pytest.fixture(params=["s3", "gcs", "azure"])
def remote(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """A test bucket on an emulator, with the emulator's address for the proxy to forward to."""
    if request.param == "s3":
        server = request.getfixturevalue("moto_server")
        return S3TestBucket(server.endpoint, monkeypatch), server.endpoint
    if request.param == "gcs":
        server = request.getfixturevalue("fake_gcs")
        return GCSTestBucket(server.endpoint, request.getfixturevalue("gcs_admin")), server.endpoint
    server = request.getfixturevalue("azurite")
    return AzureTestBucket(server, request.getfixturevalue("azure_admin"), monkeypatch), server.endpoint


def test_unchanged_resync_sends_only_listing_requests(
    remote: tuple[Any, str], workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    bucket, upstream = remote
    for i in range(12):
        bucket.put(f"set/{i:02d}.jpg", synth.jpeg(120 + i, 90, orientation=1 + i % 8))
    bucket.put("set/clip.mp4", synth.mp4(moov_last=True))
    name = unique_name(bucket.provider)
    with FaultProxy(upstream, provider=bucket.provider) as proxy:
        workspace.write_catalog(route_through(bucket.entry(name, prefix="set/"), proxy))
        assert run_sync(name, dagster_instance, log_level="ERROR").ok
        first_reads = len(proxy.object_reads())
        proxy.clear()
        assert run_sync(name, dagster_instance, log_level="ERROR").ok
        assert proxy.object_reads() == []
        assert len(proxy.listings()) >= 1
        assert not proxy.writes()
    assert first_reads >= 13  # the first sync did read every object, through the same proxy
