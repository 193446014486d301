"""`status`, `query` and the sync summary read by a person at an 80-column terminal, and by a script with `--json`.

Each CLI call is a real process with COLUMNS=80, as a terminal of that width sets it: rich then lays its tables out
for 80 columns, which is where headers used to be cut to `conne…`, dates to `2026-…` and fix commands wrapped
mid-word.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from demo import synth
from tests.conftest import Workspace

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "bucket-sync")
WIDTH = 80
PREFIX = "data/"
#: Keys under the prefix, two folders deep, one with a space: each fix must name it whole, quoted for the shell.
ROTATED = "data/2024/field trip/IMG 0007.jpg"
ISOM = "data/2024/clips/take-1.mp4"


def run(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BUCKET_SYNC_HOME": str(ws.home),
        "BUCKET_SYNC_CATALOG": str(ws.catalog),
        "DAGSTER_HOME": str(ws.home.parent / "dagster-home"),
        "COLUMNS": str(WIDTH),
    }
    for variable in ("BUCKET_SYNC_INDEX", "BUCKET_SYNC_STATE", "BUCKET_SYNC_INDEX_DATA"):
        env.pop(variable, None)
    done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One home and catalog for the module: every test reads the same sync, which runs once."""
    base = tmp_path_factory.mktemp("cli-tables")
    return Workspace(home=base / "home", catalog=base / "connections.yaml")


@pytest.fixture(scope="module")
def synced(workspace: Workspace) -> subprocess.CompletedProcess[str]:
    """One sync of a bucket with a prefix, nested folders, a folder marker, an accepted and a rejected image and
    video, and the sync's own output."""
    root = workspace.home.parent / "bucket"
    files = {
        ROTATED: synth.jpeg(64, 48, orientation=6),
        "data/2024/ok.jpg": synth.jpeg(64, 48, orientation=1),
        "data/2024/chart.png": synth.png(32, 32),
        ISOM: synth.mp4(brand="isom"),
        "data/2024/clips/take-2.mp4": synth.mp4(),
        "data/notes.txt": b"not media",
    }
    for key, body in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    (root / "data" / "empty").mkdir()  # a folder: the local provider's folder marker
    workspace.write_catalog({"name": "field-photos-archive", "provider": "local", "root": str(root), "prefix": PREFIX})
    return run(workspace, "sync", "field-photos-archive", "--quiet")


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_the_summary_says_what_the_manifest_holds_with_formatted_figures(
    synced: subprocess.CompletedProcess[str],
) -> None:
    out = synced.stdout
    assert "1 folder marker skipped" in out and "folder markers" not in out
    assert "accepted       : 3 of 6 objects" in out, out
    assert "manifest       : 2 images (image manifest; 1 video has its own manifest)" in out, out
    assert re.search(r"bytes read     : [\d.]+ (bytes|kB) of [\d.]+ kB stored \([\d.]+%\) in \d+ requests", out), out
    # The example query stands on a line of its own, whole, even past 80 columns: it is pasted, not read.
    assert any(line.strip().startswith('bucket-sync query "SELECT') and line.endswith('"') for line in lines(out))


def test_status_fits_80_columns_without_cutting_a_header_or_a_date(
    workspace: Workspace, synced: subprocess.CompletedProcess[str]
) -> None:
    out = run(workspace, "status").stdout
    assert "…" not in out, out
    header = lines(out)[0]
    for name in ("connection", "profile", "last sync", "objects", "accepted", "deleted", "violations"):
        assert re.search(rf"(^| ){name}( |$)", header), (name, out)
    assert all(len(line) <= WIDTH for line in lines(out)), out
    assert re.search(r"[A-Z][a-z]{2} \d{2} \d{2}:\d{2}", out), out  # the compact date, whole
    assert lines(out)[2].startswith("field-photos-archive "), out  # the name whole; its address folds below it
    [row] = json.loads(run(workspace, "status", "--json").stdout)
    assert row["name"] == "field-photos-archive" and row["prefix"] == PREFIX and row["detached"] is False
    assert (row["objects"], row["accepted"], row["violations"]) == (6, 3, 3)
    assert str(row["objects"]) in out and str(row["violations"]) in out


def test_query_fits_80_columns_and_prints_each_fix_whole_on_its_own_line(
    workspace: Workspace, synced: subprocess.CompletedProcess[str]
) -> None:
    sql = "SELECT rule, key, message, remediation, detected_at FROM violations ORDER BY rule, key"
    out = run(workspace, "query", sql).stdout
    rows = json.loads(run(workspace, "query", sql, "--json").stdout)
    assert {(r["rule"], r["key"]) for r in rows} >= {("exif_orientation", ROTATED), ("mp4_brand", ISOM)}
    assert "…" not in out, out
    header = lines(out)[0]
    for name in ("rule", "key", "message", "detected_at"):
        assert re.search(rf"(^| ){name}( |$)", header), (name, out)
    table = out[: out.index(f"({len(rows)} rows)")]  # the same rows as --json: the count, then one fix each
    assert all(len(line) <= WIDTH for line in lines(table)), out
    assert len(re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", table)) == len(rows), out
    fixes = [line.strip() for line in lines(out[len(table) :])]
    for row in rows:
        assert row["remediation"] in fixes, (row["remediation"], out)  # on one line, unbroken
    rotated = next(r["remediation"] for r in rows if r["rule"] == "exif_orientation")
    assert rotated.startswith(f"mogrify -auto-orient {shlex.quote(ROTATED)} "), rotated
    brand = next(r["remediation"] for r in rows if r["rule"] == "mp4_brand")
    assert shlex.split(brand)[:3] == ["ffmpeg", "-i", ISOM], brand  # the full key, prefix and folders, pasteable


def test_a_result_wider_than_the_terminal_prints_one_record_per_row(
    workspace: Workspace, synced: subprocess.CompletedProcess[str]
) -> None:
    """`SELECT * FROM syncs` has 18 columns: no table of 80 columns holds their headers, so each row is a record."""
    out = run(workspace, "query", "SELECT * FROM syncs").stdout
    [row] = json.loads(run(workspace, "query", "SELECT * FROM syncs", "--json").stdout)
    assert "…" not in out and all(len(line) <= WIDTH for line in lines(out)), out
    for column, value in row.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else None
        found = [line for line in lines(out) if line.split(" ", 1)[0] == column]
        assert len(found) == 1, (column, out)
        if shown is not None:
            assert found[0].split()[1] == shown, (column, found)


def test_preview_formats_its_count_and_bytes(workspace: Workspace, synced: subprocess.CompletedProcess[str]) -> None:
    out = run(workspace, "preview", "field-photos-archive").stdout
    assert re.match(r"field-photos-archive: 6 objects, \d+\.\d kB\n", out), out
    report = json.loads(run(workspace, "preview", "field-photos-archive", "--json").stdout)
    assert report["objects"] == 6 and isinstance(report["bytes"], int)  # raw for scripts
