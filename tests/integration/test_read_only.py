"""Read-only by default, proven from the server's side of the wire.

Every request a sync sends to S3, GCS and Azure passes through the recording proxy (tests/proxy.py) on its way to
the emulator. With manifest upload off (`publish_manifest`, the default), a first sync, a re-sync after the bucket
changed, and a full re-probe must send nothing but GET and HEAD requests, and none of them may name a mutating
operation. What a publishing connection may write is proven in test_publish_manifest.py.
"""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from demo import synth
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.integration.buckets import BucketUnderTest, unique_name
from tests.integration.test_faults import upstream_of
from tests.integration.test_sync import PREFIX, dataset, upload
from tests.proxy import FaultProxy, route_through, summarize

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("test_bucket", ["s3", "gcs", "azure"], indirect=True)
def test_a_sync_sends_no_write_to_the_bucket(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    made = dataset()
    upload(test_bucket, made)
    name = unique_name(test_bucket.provider)
    with FaultProxy(upstream_of(test_bucket), provider=test_bucket.provider) as proxy:  # type: ignore[arg-type]
        workspace.write_catalog(route_through(test_bucket.entry(name, prefix=PREFIX, profile="strict"), proxy))
        assert run_sync(name, dagster_instance, log_level="WARNING").ok
        test_bucket.put(PREFIX + "added.png", synth.png(40, 30))  # straight to the emulator, not through the proxy
        test_bucket.delete(PREFIX + "no-exif.jpg")
        assert run_sync(name, dagster_instance, log_level="WARNING").ok
        assert run_sync(name, dagster_instance, full=True, log_level="WARNING").ok
        seen = proxy.requests

    # The sync did reach the bucket through the proxy, listing and reading ...
    assert any(r.kind == "list" for r in seen), summarize(seen)
    assert any(r.kind == "object" for r in seen), summarize(seen)
    # ... and sent nothing that could change it.
    assert {r.method for r in seen} <= {"GET", "HEAD"}, summarize(seen)
    writes = [(r.method, r.path, r.query) for r in seen if r.is_write]
    assert writes == [], writes
    print(f"\n{test_bucket.provider}: {len(seen)} requests, all reads: {summarize(seen)}")
