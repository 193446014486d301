"""`make ui` as a person runs it: the URL to open, no "use dg dev instead" warning, and Ctrl-C stops everything.

`make ui PORT=...` runs in a process group of its own on a free port; the test reads its output until the URL line,
checks the webserver answers there, then stops the whole group by its PID, as a terminal's Ctrl-C would, and checks
that the webserver and the daemon it named (and their code servers, in their process groups) are gone.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Workspace
from tests.servers import free_port, http_ok

pytestmark = pytest.mark.integration

#: Bounds for a failure, not speed claims: the code location loads on a 2-core machine shared with other work.
START_BOUND_S = 300
STOP_BOUND_S = 90


def _alive(pgid: int) -> bool:
    """Whether any process of the group `pgid` is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def make_ui(workspace: Workspace, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    workspace.write_catalog({"name": "disk", "provider": "local", "root": str(tmp_path / "bucket")})
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster-home"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        ["make", "-s", "ui", f"PORT={port}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_ui_prints_the_url_without_a_deprecation_warning_and_stops_as_a_whole(
    make_ui: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = make_ui
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    url_line = None
    deadline = time.monotonic() + START_BOUND_S
    while url_line is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if "Dagster UI: open" in line:
            url_line = line
    output = "".join(seen)
    assert url_line is not None, output
    url = f"http://127.0.0.1:{port}"
    assert f"open {url} " in url_line, url_line
    assert http_ok(url + "/server_info")
    assert "dg dev" not in output and "SupersessionWarning" not in output, output
    assert "deprecat" not in output.lower(), output
    pids = {name: int(pid) for name, pid in re.findall(r"(webserver|daemon) pid (\d+)", url_line)}
    assert set(pids) == {"webserver", "daemon"}, url_line
    assert all(_alive(pid) for pid in pids.values())

    os.killpg(proc.pid, signal.SIGTERM)  # what Ctrl-C does to the foreground group, by its PID
    deadline = time.monotonic() + STOP_BOUND_S
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in pids.values()), f"still running: {pids}"
    with pytest.raises(OSError):  # nothing listens there any more: the connection is refused
        http_ok(url + "/server_info")
