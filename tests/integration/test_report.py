"""The visual report of a synced demo-like connection: written by the sync and by `bucket-sync report`, rendered in
headless Chromium, one row per violation in the index, thumbnails from the EXIF bytes probing read."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from PIL import Image

from assets.snapshots import SnapshotKeys
from demo import synth
from pipelines.runner import run_sync
from tests.browser import screenshot
from tests.conftest import Workspace
from tests.integration.buckets import LocalTestBucket
from tests.servers import VENV_BIN

pytestmark = pytest.mark.integration

NAME = "report-demo"
#: Breaks exif_orientation like the demo's phone photos, but carries no EXIF thumbnail: only a fetch can show it.
WITHOUT_THUMBNAIL = "images/no-thumbnail-portrait.jpg"


class ReportPage(HTMLParser):
    """What a test needs from the page: the violation rows, the images' sources and every external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str]] = []
        self.images: list[str] = []
        self.row_images: dict[str, str] = {}
        self.references: list[str] = []
        self._row_key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-violation" in found:
            self.rows.append((found["data-key"] or "", found["data-rule"] or ""))
            self._row_key = found["data-key"]
        for name in ("src", "href"):
            if found.get(name):
                self.references.append(found[name] or "")
        if tag == "img" and found.get("src"):
            self.images.append(found["src"] or "")
            if self._row_key:
                self.row_images[self._row_key] = found["src"] or ""


def parse(html: str) -> ReportPage:
    page = ReportPage()
    page.feed(html)
    return page


def cli(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BUCKET_SYNC_HOME": str(workspace.home), "BUCKET_SYNC_CATALOG": str(workspace.catalog)}
    return subprocess.run(
        [str(VENV_BIN / "bucket-sync"), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def synced(workspace: Workspace, tmp_path: Path, dagster_instance: DagsterInstance) -> Path:
    """The demo dataset plus one rotated photo without a thumbnail, synced twice with a change between the syncs."""
    root = tmp_path / "bucket"
    synth.write_demo_dataset(root)
    bucket = LocalTestBucket(root)
    workspace.write_catalog(bucket.entry(NAME, profile="strict"))
    assert run_sync(NAME, dagster_instance, log_level="WARNING").ok
    bucket.put(WITHOUT_THUMBNAIL, synth.jpeg(900, 600, orientation=6, seed=11))
    bucket.delete("images/camera-upside-down.jpg")
    assert run_sync(NAME, dagster_instance, log_level="WARNING").ok
    return root


def test_the_report_has_one_row_per_violation_and_renders_in_chromium(
    synced: Path, workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    in_index = workspace.query("SELECT key, rule FROM violations WHERE connection = $c", {"c": NAME})
    assert len(in_index) >= 8

    # The sync wrote the report through the state store and linked it from the index asset's metadata.
    stored = workspace.state_store.read_bytes(SnapshotKeys(NAME).report)
    assert stored is not None
    event = dagster_instance.get_latest_materialization_event(AssetKey("media_index"))
    assert event is not None and event.asset_materialization is not None
    link = event.asset_materialization.metadata["report"].value
    assert Path(link).read_bytes() == stored

    done = cli(workspace, "report", NAME, "--out", str(tmp_path / "report.html"))
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "report.html").read_text()
    page = parse(html)
    assert sorted(page.rows) == sorted(in_index), "exactly one row per violation in the index"
    # Self-contained: every picture inline, no reference to anything outside the page.
    assert page.references and all(ref.startswith("data:image/jpeg;base64,") for ref in page.references)
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    # Both syncs in the chart, with the rule whose count changed between them.
    assert html.count("<circle") >= 2 * 2 and "exif_orientation (3)" in html

    # The demo's camera photos embed a thumbnail: shown turned as a viewer shows them, with nothing fetched.
    portrait = _image(page.row_images["images/phone-portrait.jpg"])
    assert portrait.width < portrait.height, "orientation 6 shows the landscape-stored photo as a portrait"
    assert WITHOUT_THUMBNAIL not in page.row_images

    shot = screenshot((tmp_path / "report.html").as_uri(), tmp_path / "report.png")
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 22) or []
        assert len(colours) > 1000, "the screenshot is blank or one flat colour"
        assert max(count for count, _ in colours) < 0.9 * image.width * image.height


def test_fetch_thumbnails_reads_a_capped_range_of_objects_without_one(synced: Path, workspace: Workspace) -> None:
    done = cli(workspace, "report", NAME, "--fetch-thumbnails", "--max-bytes", "60000")
    assert done.returncode == 0, done.stderr
    page = parse(workspace.state_store.read_bytes(SnapshotKeys(NAME).report).decode())
    shown = _image(page.row_images[WITHOUT_THUMBNAIL])
    assert shown.width < shown.height, "the fetched thumbnail is turned by its orientation too"
    assert (synced / WITHOUT_THUMBNAIL).stat().st_size > 60000, "the read was capped below the object's size"


def test_report_of_a_connection_never_synced_says_so(workspace: Workspace) -> None:
    workspace.write_catalog({"name": "never", "provider": "local", "root": str(workspace.home)})
    done = cli(workspace, "report", "never")
    assert done.returncode != 0
    assert "sync" in done.stderr and "Traceback" not in done.stderr


def _image(src: str) -> Image.Image:
    data = base64.b64decode(src.removeprefix("data:image/jpeg;base64,"))
    return Image.open(io.BytesIO(data))
