"""Emulators (one per session, on free loopback ports) and the per-provider test buckets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.buckets import BucketUnderTest, LocalTestBucket, S3TestBucket
from tests.servers import Server, start_moto

PROVIDERS = ["local", "s3"]


@pytest.fixture(scope="session")
def moto_server(server_logs: Path) -> Iterator[Server]:
    server = start_moto(server_logs)
    yield server
    server.stop()


@pytest.fixture(params=PROVIDERS)
def test_bucket(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BucketUnderTest:
    """A fresh, empty bucket on each provider in turn."""
    if request.param == "local":
        return LocalTestBucket(tmp_path / "bucket")
    if request.param == "s3":
        return S3TestBucket(request.getfixturevalue("moto_server").endpoint, monkeypatch)
    raise AssertionError(request.param)
