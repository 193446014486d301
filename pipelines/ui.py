"""`make ui`: the Dagster webserver and daemon for this workspace, started together and stopped together.

`dagster dev` does the same, but Dagster 1.13 marks it superseded and prints "Use 'dg dev' instead" at every start;
`dg dev` needs the separate dagster-dg-cli package and its project layout. What `dagster dev` runs is two commands
that are not deprecated, `dagster-webserver` and `dagster-daemon run`, each given the same workspace and the same
instance (DAGSTER_HOME). This module starts both, each in a process group of its own (with the code server each one
starts), prints the URL to open once the webserver answers, and on Ctrl-C or SIGTERM stops both groups by their PIDs:
politely first, then for good. If either stops on its own, the other is stopped too, and the exit status says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

#: How long each group gets to stop after SIGTERM before SIGKILL: the webserver and daemon stop in seconds.
STOP_GRACE_S = 20.0
#: How long the webserver may take to answer (it loads the code location first, which imports Dagster and ours).
START_TIMEOUT_S = 300.0


class Stop(Exception):
    """A signal asked the UI to stop."""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except (urllib.error.URLError, OSError):
        return False


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process group, then SIGKILL to any that outlives STOP_GRACE_S. Each child leads its own group
    (start_new_session), so its code server and the processes it starts stop with it."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        # The leader may be gone while its group lives on (a code server): end the group either way.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address the webserver binds (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port the webserver listens on (default 3000)")
    parser.add_argument("--workspace", default="workspace.yaml", help="the workspace file (default workspace.yaml)")
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    workspace = ["-w", args.workspace]
    commands = {
        "webserver": [str(bin_dir / "dagster-webserver"), *workspace, "-h", args.host, "-p", str(args.port)],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", *workspace],
    }

    def stop_on(signum: int, frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop_on)
    signal.signal(signal.SIGINT, stop_on)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    url = f"http://{args.host}:{args.port}"
    try:
        for name, command in commands.items():
            processes[name] = subprocess.Popen(command, start_new_session=True)
        pids = ", ".join(f"{name} pid {proc.pid}" for name, proc in processes.items())
        deadline = time.monotonic() + START_TIMEOUT_S
        ready = False
        while all(proc.poll() is None for proc in processes.values()) and time.monotonic() < deadline:
            if ready := _answers(f"{url}/server_info"):
                break
            time.sleep(0.5)
        if ready:
            print(f"\nDagster UI: open {url}  ({pids}; Ctrl-C stops both)\n", flush=True)
            while all(proc.poll() is None for proc in processes.values()):
                time.sleep(0.5)
        ended = [f"{name} exited with code {proc.returncode}" for name, proc in processes.items() if proc.poll()]
        reason = ", ".join(ended) or f"the webserver did not answer on {url} within {START_TIMEOUT_S:.0f}s"
        print(f"error: {reason}; stopping the UI", file=sys.stderr)
        return 1
    except Stop:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stopping short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(list(processes.values()))


if __name__ == "__main__":
    sys.exit(main())
