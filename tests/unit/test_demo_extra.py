"""PyAV is the optional `demo` extra: probing never needs it, and the demo says how to get it when it is missing.

Each check runs in a fresh interpreter, because this test process has long since imported PyAV through demo.synth.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, Workspace

#: What `media/` must never pull in: PyAV (the demo extra), Dagster and the cloud SDKs (DESIGN.md, Layout).
FORBIDDEN = ("av", "dagster", "boto3", "google.cloud", "azure")

IMPORT_ALL_MEDIA = """
import importlib, json, pkgutil, sys
import media
names = sorted(m.name for m in pkgutil.iter_modules(media.__path__, "media."))
for name in names:
    importlib.import_module(name)
forbidden = {forbidden!r}
print(json.dumps({{"modules": names, "loaded": [f for f in forbidden if f in sys.modules]}}))
"""

DEMO_WITHOUT_AV = """
import sys
sys.modules["av"] = None  # what `import av` sees when PyAV is not installed: ImportError
sys.argv = ["bucket-sync", "demo"]
from pipelines.cli import main
main()
"""


def _python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def test_importing_every_media_module_imports_no_pyav_dagster_or_sdk() -> None:
    run = _python(IMPORT_ALL_MEDIA.format(forbidden=FORBIDDEN))
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert "media.facts" in seen["modules"] and "media.probe" in seen["modules"]
    assert "media.synth" not in seen["modules"], "the media generator lives in demo/, next to the demo"
    assert seen["loaded"] == [], f"importing media/ imported {seen['loaded']}"


def test_demo_without_pyav_fails_with_the_fix_not_a_traceback(workspace: Workspace, tmp_path: Path) -> None:
    bucket = tmp_path / "demo-bucket"  # missing, so the demo must generate it
    workspace.write_catalog({"name": "demo", "provider": "local", "root": str(bucket)})
    run = _python(DEMO_WITHOUT_AV)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "pip install 'bucket-sync[demo]'" in run.stderr
    assert "Traceback" not in run.stderr
    assert not bucket.exists(), "nothing is written when the demo cannot be made whole"


def test_the_image_installs_no_demo_extra() -> None:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    syncs = re.findall(r"uv sync [^\n]*", text)
    assert syncs and all("--no-dev" in line and "demo" not in line for line in syncs), syncs
