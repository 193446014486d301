"""A provider's SDK is imported only when a connection of that provider is opened.

Loading the catalog validates every entry with the SDK-free settings models (resources/settings/); the bucket class,
and with it boto3, google-cloud-storage or azure-storage-blob, is imported by `open`. Run in a fresh interpreter,
because this test process has long since imported every SDK.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SDKS = ("boto3", "google.cloud.storage", "azure.storage.blob")

SCRIPT = """
import json, sys
from resources.catalog import load_catalog
from resources.providers import open_bucket

sdks = {sdks!r}
seen = {{"loaded": [m for m in sdks if m in sys.modules]}}
catalog = load_catalog({catalog!r})
seen["validated"] = [m for m in sdks if m in sys.modules]
open_bucket(catalog.get("photos-s3"))
seen["opened_s3"] = [m for m in sdks if m in sys.modules]
print(json.dumps(seen))
"""


def test_loading_a_catalog_imports_no_sdk_and_opening_s3_imports_only_boto3(tmp_path: Path) -> None:
    catalog = tmp_path / "connections.yaml"
    catalog.write_text(
        json.dumps(
            {
                "connections": [
                    {"name": "photos-s3", "provider": "s3", "bucket": "photos", "auth": {"mode": "anonymous"},
                     "options": {"endpoint": "http://127.0.0.1:9", "path_style": True}},
                    {"name": "photos-gcs", "provider": "gcs", "bucket": "photos", "auth": {"mode": "anonymous"}},
                    {"name": "photos-azure", "provider": "azure", "bucket": "photos",
                     "options": {"account": "devstore"}, "auth": {"mode": "anonymous"}},
                    {"name": "photos-local", "provider": "local", "root": str(tmp_path)},
                ]
            }
        )
    )  # fmt: skip
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(sdks=SDKS, catalog=str(catalog))],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == [], "importing resources.catalog or resources.providers imported an SDK"
    assert seen["validated"] == [], "validating s3/gcs/azure entries imported an SDK"
    assert seen["opened_s3"] == ["boto3"], "opening an S3 connection imported more than the S3 stack"
