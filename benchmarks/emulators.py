"""The emulator set-up the benchmarks share: a filled moto or fake-gcs-server bucket and its catalog entry.

Each benchmark measures something different, but the buckets they measure against are made the same way; keeping
that here means a change to how an emulator is reached (an endpoint option, the auth mode) is made once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.servers import Server, start_fake_gcs, start_moto

BUCKET = "bench"
#: Credentials for moto, given to bucket-sync by variable name as a real catalog would.
S3_KEY_ENV, S3_SECRET_ENV = "BENCH_S3_KEY", "BENCH_S3_SECRET"


def fill_parallel(put: Callable[[str, bytes], Any], objects: Iterable[tuple[str, bytes]]) -> None:
    """Upload (key, data) pairs eight at a time: filling thousands of objects one by one dominates a run."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: put(*item), objects))


def start_s3_bucket(logs: Path) -> tuple[Server, Any]:
    """moto with an empty `bench` bucket, and a boto3 client for it."""
    import boto3

    server = start_moto(logs)
    os.environ[S3_KEY_ENV], os.environ[S3_SECRET_ENV] = "bench", "bench-secret"
    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=BUCKET)
    return server, s3


def s3_entry(name: str, endpoint: str, profile: str = "strict") -> dict[str, Any]:
    return {
        "name": name,
        "provider": "s3",
        "bucket": BUCKET,
        "profile": profile,
        "options": {"endpoint": endpoint, "region": "us-east-1", "path_style": True},
        "auth": {"mode": "keys", "access_key_id_env": S3_KEY_ENV, "secret_access_key_env": S3_SECRET_ENV},
    }


def start_gcs_bucket(logs: Path) -> tuple[Server, Any]:
    """fake-gcs-server with an empty `bench` bucket, and a google-cloud-storage bucket handle for it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    server = start_fake_gcs(logs)
    client = storage.Client(
        project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": server.endpoint}
    )
    return server, client.create_bucket(BUCKET)


def gcs_entry(name: str, endpoint: str, profile: str = "strict") -> dict[str, Any]:
    # Anonymous: fake-gcs-server checks no credentials, and obstore then sends unsigned requests (skip_signature),
    # as the GCS integration tests do.
    return {
        "name": name,
        "provider": "gcs",
        "bucket": BUCKET,
        "profile": profile,
        "options": {"endpoint": endpoint, "project": "bench"},
        "auth": {"mode": "anonymous"},
    }
