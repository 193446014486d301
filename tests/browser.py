"""Headless Chromium from Debian's packages (`make chromium`), for screenshots of the report and of the Dagster UI.

One process per screenshot, in its own process group with a private profile folder, stopped by its PID when it
overruns. Under CI=true a missing browser fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

#: Long enough for a cold start on a 2-core machine shared with other work; a hung browser is killed after it.
TIMEOUT_S = 180


def chromium() -> str:
    """The chromium executable; fails under CI=true and skips elsewhere when it is missing."""
    found = shutil.which("chromium")
    if found:
        return found
    reason = "no chromium on PATH: run `make chromium` (apt-get install chromium, as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def screenshot(url: str, out: Path, *, width: int = 1200, height: int = 2000, extra: tuple[str, ...] = ()) -> Path:
    """Load `url` in headless Chromium and save a `width` x `height` PNG to `out`."""
    binary = chromium()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        argv = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            *extra,
            url,
        ]
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True
        )
        try:
            output, _ = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"chromium did not finish a screenshot of {url} within {TIMEOUT_S}s") from None
        finally:
            # The browser's helpers (zygote, renderer) share its process group: none may outlive the screenshot.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.wait()
    assert out.exists(), f"chromium wrote no screenshot (exit {process.returncode}): {output[-2000:]}"
    return out
