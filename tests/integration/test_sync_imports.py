"""A sync of local connections imports no cloud SDK and no Dagster cloud integration.

The code location declares one resource per concept (catalog, state store, index); a provider's bucket resource,
and with it boto3, google-cloud-storage, azure-storage-blob and dagster-aws/gcp/azure, is built only when a connection
of that provider is opened. A catalog that also holds S3, GCS and Azure entries must not change that for a sync of a
local one. Run in a fresh interpreter, since this test process has imported every SDK long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Workspace

pytestmark = pytest.mark.integration

CLOUD = ("boto3", "botocore", "google", "azure", "dagster_aws", "dagster_gcp", "dagster_azure")

SCRIPT = """
import json, sys
from pipelines.cli import main

sys.argv = ["bucket-sync", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
cloud = {cloud!r}
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(cloud))
print("\\n" + json.dumps({{"code": code, "loaded": loaded}}))
"""


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
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(cloud=CLOUD), "sync", "disk", "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, done.stdout + done.stderr
    assert "accepted       : 1 of 1" in done.stdout
    assert report["loaded"] == [], f"a sync of a local connection imported {report['loaded']}"
