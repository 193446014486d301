"""A sync of local connections imports no cloud SDK and no Dagster cloud integration.

The code location declares one resource per concept (catalog, state store, index); a provider's bucket resource,
and with it boto3, google-cloud-storage, azure-storage-blob and dagster-aws/gcp/azure, is built only when a connection
of that provider is opened. A catalog that also holds S3, GCS and Azure entries must not change that for a sync of a
local one. Run in a fresh interpreter, since this test process has imported every SDK long ago.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli_modules import run_cli
from tests.conftest import Workspace

pytestmark = pytest.mark.integration

CLOUD = ("boto3", "botocore", "google", "azure", "dagster_aws", "dagster_gcp", "dagster_azure")


def test_syncing_a_local_connection_imports_no_cloud_sdk(workspace: Workspace, tmp_path: Path) -> None:
    from PIL import Image

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(bucket / "one.jpg", "JPEG")
    workspace.write_catalog(
        {"name": "disk", "provider": "local", "root": str(bucket)},
        {"name": "s3-photos", "provider": "s3", "bucket": "photos", "auth": {"mode": "anonymous"}},
        {"name": "gcs-photos", "provider": "gcs", "bucket": "photos", "auth": {"mode": "anonymous"}},
        {"name": "az-photos", "provider": "azure", "bucket": "photos", "options": {"account": "devstore"},
         "auth": {"mode": "anonymous"}},
    )  # fmt: skip
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster-home")}
    code, modules, output = run_cli(env, "sync", "disk", "--quiet", timeout=300)
    loaded = sorted(modules & set(CLOUD))
    assert code == 0, output
    assert "accepted       : 1 of 1 object\n" in output
    assert loaded == [], f"a sync of a local connection imported {loaded}"
