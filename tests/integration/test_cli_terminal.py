"""`bucket-sync sync` on a terminal and in a pipe: real processes at 80 columns, a pseudo-terminal for the tty case.

On a terminal a sync shows a spinner before Dagster has loaded and a live bar per stage; in a pipe or with -q, no
control codes at all. A failed or blocked sync ends with one line that states the cause and the fix, with no stack
trace unless -v asks for Dagster's own log, and the run's failure in the instance (what the UI shows) says the same.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance

from demo import synth
from pipelines.runner import cause_sentence
from tests.conftest import Workspace
from tests.servers import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "bucket-sync")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SPINNER = re.compile(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")


def environment(ws: Workspace) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(ws.home.parent / "dagster-home"), "COLUMNS": "80", "TERM": "xterm"}


def piped(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=environment(ws), timeout=300, check=False)


def on_terminal(ws: Workspace, *args: str) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal 80 columns wide; its exit code and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([CLI, *args], stdin=slave, stdout=slave, stderr=slave, env=environment(ws))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every process holding the terminal has closed it
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def screen_lines(output: str) -> list[str]:
    """What the output leaves on the screen line by line, and every frame drawn on the way, control codes removed."""
    return [line.strip() for line in re.split(r"[\r\n]+", CONTROL.sub("", output)) if line.strip()]


def fill(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"img-{i:03d}.png").write_bytes(synth.png(16 + i, 16))


def unreachable(name: str) -> dict[str, Any]:
    endpoint = f"http://127.0.0.1:{free_port()}"
    return {
        "name": name,
        "provider": "s3",
        "bucket": "nowhere",
        "options": {"endpoint": endpoint, "region": "us-east-1"},
        "auth": {"mode": "anonymous"},
    }


@pytest.fixture
def disk(workspace: Workspace, tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    fill(root, 40)
    workspace.write_catalog({"name": "disk", "provider": "local", "root": str(root)}, unreachable("down"))
    return root


def test_a_terminal_gets_a_spinner_at_once_then_a_bar_for_listing_and_probing(workspace: Workspace, disk: Path) -> None:
    code, output = on_terminal(workspace, "sync", "disk")
    assert code == 0, output
    lines = screen_lines(output)
    assert SPINNER.match(lines[0]) and "starting Dagster…" in lines[0], lines[:3]  # before Dagster is imported
    listing = [line for line in lines if "listing 'disk'" in line and "objects" in line]
    assert listing and "40 objects · 1 page" in listing[-1], lines
    probing = [line for line in lines if "probing 'disk'" in line]
    assert any("40/40" in line and "/s" in line and "ETA" in line for line in probing), probing
    frames = [CONTROL.sub("", frame) for frame in re.split(r"[\r\n]+", output) if SPINNER.search(frame)]
    assert frames and all(len(frame.rstrip()) <= 80 for frame in frames), "a bar wider than the terminal"
    synced = [i for i, line in enumerate(lines) if line.startswith("Synced 'disk'")]
    assert synced and synced[-1] > lines.index(probing[-1]), "the summary comes after the bars"
    assert "Traceback" not in output


def test_a_pipe_or_quiet_gets_no_bar(workspace: Workspace, disk: Path) -> None:
    done = piped(workspace, "sync", "disk")
    assert done.returncode == 0, done.stderr
    assert not CONTROL.search(done.stdout + done.stderr) and not SPINNER.search(done.stderr)
    assert "starting Dagster" not in done.stderr
    # Outside a terminal the run's own lines say what the bar would: listing, then probing, in words.
    assert "object_listing: listing 'disk': 40 objects, 1 page" in done.stderr, done.stderr
    assert "media_probes: probing 'disk': 40/40 (100%)" in done.stderr, done.stderr

    code, output = on_terminal(workspace, "sync", "disk", "-q")
    assert code == 0, output
    assert not SPINNER.search(output) and "starting Dagster" not in output and "listing 'disk'" not in output
    assert "Synced 'disk'" in output


def test_a_failed_sync_ends_with_its_cause_and_fix_and_no_stack_trace(workspace: Workspace, disk: Path) -> None:
    done = piped(workspace, "sync", "down")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sync of 'down' failed in object_listing: connection 'down': listing s3://nowhere/")
    assert "check the endpoint, the network and the credentials with `bucket-sync test down`" in last
    assert "Traceback" not in done.stdout + done.stderr and "Stack Trace" not in done.stderr
    assert "Dependencies for step" not in done.stderr, "the steps skipped because of it are not errors of their own"
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr

    # The run's failure, as the UI shows it, carries the same sentence.
    run_id = re.search(r"\(run ([0-9a-f-]{36});", last).group(1)  # type: ignore[union-attr]
    with DagsterInstance.from_config(str(workspace.home.parent / "dagster-home")) as instance:
        failures = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        description = failures[0].dagster_event.step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert description == cause_sentence(description)
    assert f"failed in object_listing: {description} (run {run_id};" in last

    code, output = on_terminal(workspace, "sync", "down")
    assert code == 2
    assert screen_lines(output)[-1].startswith("error: sync of 'down' failed in object_listing: connection 'down'")
    assert "Traceback" not in output and "Stack Trace" not in output

    verbose = piped(workspace, "sync", "down", "-v")
    assert verbose.returncode == 2 and "Stack Trace" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("error: sync of 'down' failed in object_listing")


def test_a_blocked_sync_says_why_without_a_wall_of_errors(workspace: Workspace, disk: Path) -> None:
    assert piped(workspace, "sync", "disk", "-q").returncode == 0
    for path in sorted(disk.iterdir())[1:]:
        path.unlink()
    blocked = piped(workspace, "sync", "disk")
    assert blocked.returncode == 3
    lines = blocked.stderr.strip().splitlines()
    assert lines[-1].startswith("blocked: listing fell from 40 to 1 objects; sync blocked.")
    assert "`bucket-sync sync disk --allow-collapse`" in lines[-1]
    assert not [line for line in lines if line.startswith("error")], lines
    assert "Traceback" not in blocked.stderr and len(lines) <= 4, lines


def test_an_error_no_command_expected_is_one_line_unless_verbose(
    workspace: Workspace, disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKET_SYNC_EXECUTOR", "bogus")  # fails as the definitions load, inside the run's set-up
    done = piped(workspace, "sync", "disk")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: ExecutorChoiceError: BUCKET_SYNC_EXECUTOR='bogus' is not an executor bucket-sync knows; use one of: "
        "in_process, multiprocess, celery, k8s (unset means in_process) (run again with -v, or BUCKET_SYNC_VERBOSE=1, "
        "for the stack trace)"
    ]
    verbose = piped(workspace, "sync", "disk", "-v")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
