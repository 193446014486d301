"""`bucket-sync` as a person runs it: a real process, a real catalog, a real Dagster home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo import synth
from tests.conftest import REPO, Workspace

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "bucket-sync")


def run(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(ws.home.parent / "dagster-home"), "COLUMNS": "200"}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture
def local_catalog(workspace: Workspace, tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.jpg").write_bytes(synth.jpeg(64, 48, orientation=6))
    (root / "a" / "two.png").write_bytes(synth.png(32, 32))
    (root / "b.txt").write_bytes(b"text")
    workspace.write_catalog(
        {"name": "disk", "provider": "local", "root": str(root)},
        {"name": "gone", "provider": "local", "root": str(tmp_path / "missing")},
    )
    return root


def test_preview_reports_counts_extensions_and_samples(workspace: Workspace, local_catalog: Path) -> None:
    done = run(workspace, "preview", "disk", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["objects"] == 3
    assert report["bytes"] == sum(p.stat().st_size for p in local_catalog.rglob("*") if p.is_file())
    assert report["extensions"] == {".jpg": 1, ".png": 1, ".txt": 1}
    assert sorted(report["sample_keys"]) == ["a/one.jpg", "a/two.png", "b.txt"]
    assert not (workspace.home / "index.duckdb").exists(), "preview must not sync"


def test_connection_test_statuses_and_exit_codes(workspace: Workspace, local_catalog: Path) -> None:
    ok = run(workspace, "test", "disk", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "AVAILABLE"
    missing = run(workspace, "test", "gone")
    assert missing.returncode == 1
    assert missing.stdout.startswith("NOT_FOUND gone (local)") and "what to do:" in missing.stdout


def test_sync_then_status_and_query(workspace: Workspace, local_catalog: Path) -> None:
    done = run(workspace, "sync", "disk", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "objects listed : 3" in done.stdout and "exif_orientation 1" in done.stdout
    status = run(workspace, "status")
    assert status.returncode == 0 and "disk" in status.stdout
    answer = run(workspace, "query", "SELECT count(*) AS n FROM media WHERE connection = 'disk'")
    assert answer.returncode == 0 and "3" in answer.stdout


def test_bad_catalog_gives_a_located_message_not_a_traceback(workspace: Workspace) -> None:
    workspace.catalog.write_text("connections:\n  - name: x\n    provider: local\n    root: .\n    rooot: typo\n")
    for args in (("sync", "x"), ("preview", "x"), ("test", "x")):
        done = run(workspace, *args)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr + done.stdout
        assert f"{workspace.catalog}:2: connection 'x', field 'rooot': unknown field" in done.stderr


def test_unknown_connection_lists_the_known_ones(workspace: Workspace, local_catalog: Path) -> None:
    done = run(workspace, "sync", "nope")
    assert done.returncode == 2 and "no connection named 'nope' (known: disk, gone)" in done.stderr


def test_definitions_validate(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(exe), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr
