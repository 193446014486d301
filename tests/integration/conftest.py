"""Per-provider test buckets: the sync suite asks for `test_bucket` and runs once on each provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from pipelines.executor import VARIABLE
from pipelines.instance import ensure_dagster_home, ensure_index_pool
from tests.conftest import Workspace
from tests.dagster_ui import DagsterUI, start_dagster_dev
from tests.integration.buckets import (
    AzureTestBucket,
    BucketUnderTest,
    GCSTestBucket,
    LocalTestBucket,
    S3TestBucket,
)
from tests.servers import Server, start_moto

PROVIDERS = ["local", "s3", "gcs", "azure"]


@pytest.fixture(scope="session")
def moto_server(server_logs: Path) -> Iterator[Server]:
    server = start_moto(server_logs)
    yield server
    server.stop()


@pytest.fixture(params=PROVIDERS)
def test_bucket(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BucketUnderTest:
    """A fresh, empty bucket on each provider in turn, on that provider's emulator."""
    provider = request.param
    if provider == "local":
        return LocalTestBucket(tmp_path / "bucket")
    if provider == "s3":
        return S3TestBucket(request.getfixturevalue("moto_server").endpoint, monkeypatch)
    if provider == "gcs":
        return GCSTestBucket(request.getfixturevalue("fake_gcs").endpoint, request.getfixturevalue("gcs_admin"))
    if provider == "azure":
        return AzureTestBucket(request.getfixturevalue("azurite"), request.getfixturevalue("azure_admin"), monkeypatch)
    raise AssertionError(provider)


@pytest.fixture
def dagster_ui(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_logs: Path
) -> Iterator[DagsterUI]:
    """`dagster dev` on the workspace's code location, with a private DAGSTER_HOME holding the settings `make ui`
    writes; the test's process (and any `bucket-sync` it starts) shares that home through the environment."""
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster-home"))
    home = ensure_dagster_home()
    with DagsterInstance.from_config(str(home)) as instance:
        ensure_index_pool(instance)
    ui = start_dagster_dev(server_logs, {})
    try:
        yield ui
    finally:
        ui.stop()
