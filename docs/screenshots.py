"""Make the PNG screenshots in docs/: the demo's visual report, and the Dagster UI's asset page with its plots.

    .venv/bin/python docs/screenshots.py            (needs `make chromium`; takes a few minutes)

Everything runs in a throwaway folder: the demo dataset, a Dagster home, a `dagster dev` on a free loopback port
(tests/dagster_ui.py, stopped by its process group at the end) and headless Chromium (tests/browser.py). Four syncs of
the demo connection, with changes between them, give the plots their points: a rotated photo added, then a video
with the wrong brand, then two photos fixed. The report is written by `bucket-sync report demo` and shot as a file.
The asset page (Overview of media_probes) is loaded through Chromium's DevTools protocol, which can click what a
person clicks: "Skip" on the first visit's newsletter dialog, then the Metadata section's "Plots" and "Events"
toggles (one point per materialization). The page gets fifteen seconds to load its data first, as
`--virtual-time-budget=15000` would give it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser import chromium, screenshot  # noqa: E402

DOCS = REPO / "docs"
RENDER_WAIT_S = 15.0
#: Click the first button whose text is the given label; true when there was one.
_CLICK = (
    "(() => { const b = [...document.querySelectorAll('button')].find(e => e.textContent.trim() === %s);"
    " if (b) { b.click(); return true; } return false; })()"
)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bucket-sync-docs-") as folder:
        work = Path(folder)
        os.environ.update(
            {
                "BUCKET_SYNC_HOME": str(work / "home"),
                "BUCKET_SYNC_CATALOG": str(work / "connections.yaml"),
                "DAGSTER_HOME": str(work / "dagster-home"),
            }
        )
        os.environ.pop("BUCKET_SYNC_EXECUTOR", None)
        from dagster import DagsterInstance

        from demo import synth
        from pipelines.instance import ensure_dagster_home, ensure_index_pool
        from pipelines.runner import run_sync
        from resources.catalog import dump_catalog
        from tests.dagster_ui import start_dagster_dev

        bucket = work / "demo-bucket"
        synth.write_demo_dataset(bucket)
        (work / "connections.yaml").write_text(
            dump_catalog([{"name": "demo", "provider": "local", "root": str(bucket), "profile": "strict"}])
        )
        home = ensure_dagster_home()
        changes = [
            lambda: (bucket / "images/holiday-sideways.jpg").write_bytes(
                synth.jpeg(1024, 768, orientation=6, seed=21, exif_extra_bytes=6000, exif_thumbnail=True)
            ),
            lambda: (bucket / "videos/phone-clip.mp4").write_bytes(synth.mp4(brand="isom", width=160, height=120)),
            lambda: [
                (bucket / key).write_bytes(synth.jpeg(1024, 768, orientation=1, seed=s, exif_thumbnail=True))
                for key, s in (("images/camera-upside-down.jpg", 2), ("images/phone-portrait-ccw.jpg", 4))
            ],
        ]
        with DagsterInstance.from_config(str(home)) as instance:
            ensure_index_pool(instance)
            ui = start_dagster_dev(work, {})
            try:
                for change in [None, *changes]:
                    if change is not None:
                        change()
                    assert run_sync("demo", instance, log_level="WARNING").ok
                report = work / "report.html"
                subprocess.run(
                    [str(REPO / ".venv/bin/bucket-sync"), "report", "demo", "--out", str(report)], check=True
                )
                screenshot(report.as_uri(), DOCS / "report.png", width=1200, height=2000)
                endpoint = ui.server.endpoint
                asset_page(f"{endpoint}/assets/media_probes?partition=demo", DOCS / "asset-plots.png")
            finally:
                ui.stop()
    print(f"wrote {DOCS / 'report.png'} and {DOCS / 'asset-plots.png'}")


def asset_page(url: str, out: Path, width: int = 1400, height: int = 1800) -> None:
    """Screenshot `url` after clicking its "Plots" toggle, through Chromium's DevTools protocol."""
    import websocket  # websocket-client, installed with Dagster's dependencies

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        argv = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline:
                    raise TimeoutError("chromium did not open its DevTools port")
                time.sleep(0.2)
            port = port_file.read_text().splitlines()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                page = next(t for t in json.loads(response.read()) if t["type"] == "page")
            ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
            calls = iter(range(1, 1000))

            def call(method: str, **params: object) -> dict:
                number = next(calls)
                ws.send(json.dumps({"id": number, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv())
                    if message.get("id") == number:
                        return message.get("result", {})

            call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            call("Page.enable")
            call("Page.navigate", url=url)
            time.sleep(RENDER_WAIT_S)
            # The first visit's newsletter dialog, then the metadata's plots, over the materializations (Events)
            # rather than one point per partition.
            for label in ("Skip", "Plots", "Events"):
                clicked = call("Runtime.evaluate", expression=_CLICK % json.dumps(label), returnByValue=True)
                if not clicked.get("result", {}).get("value") and label != "Skip":
                    raise RuntimeError(f"no '{label}' button on {url}: the Dagster UI changed; update this script")
                time.sleep(RENDER_WAIT_S / 3)
            shot = call("Page.captureScreenshot", format="png")
            out.write_bytes(base64.b64decode(shot["data"]))
            ws.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


if __name__ == "__main__":
    main()
