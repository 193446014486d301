"""`bucket-sync` facing what it does not control: an index that is corrupt or held by another process.

Each case runs the real CLI, as a process where the point is what a person sees (no traceback), in process (CliRunner)
where a process start per case would only add time.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from pipelines.cli import app

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "bucket-sync")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli_env(home: Path, catalog: Path, dagster_home: Path) -> dict[str, str | None]:
    return {
        "BUCKET_SYNC_HOME": str(home),
        "BUCKET_SYNC_CATALOG": str(catalog),
        "DAGSTER_HOME": str(dagster_home),
        "BUCKET_SYNC_PROGRESS": None,
        "FORCE_COLOR": None,  # rich's own styling would put ESC bytes in the output and blur what the tests check
        "TTY_COMPATIBLE": None,
        "COLUMNS": "200",
    }


def invoke(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)


# --- a corrupt or locked index is one line of advice, not a traceback ------------------------------------------------


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str | None]:
    """A catalog-less home with no sync: these tests put the index file there themselves."""
    (tmp_path / "home").mkdir()
    return cli_env(tmp_path / "home", tmp_path / "connections.yaml", tmp_path / "dagster-home")


def run_process(env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[str]:
    process_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=process_env, timeout=120, check=False)


@pytest.mark.parametrize("command", [("status",), ("query", "SELECT 1")])
def test_corrupt_index_names_the_file_and_the_rebuild(bare_env: dict[str, str | None], command: tuple[str]) -> None:
    index = Path(str(bare_env["BUCKET_SYNC_HOME"])) / "index.duckdb"
    index.write_bytes(b"this is not DuckDB \x00\xff" * 300)
    before = digest(index)

    done = run_process(bare_env, *command)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    message = done.stderr.strip()
    assert message.count("\n") == 0, message
    assert f"the index at {index} is not a readable DuckDB file (" in message
    assert "move it aside and run `bucket-sync sync NAME --full`" in message
    assert digest(index) == before


@pytest.fixture
def held_index(bare_env: dict[str, str | None]) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another process that opens the index read-write and keeps it, as a sync writing it does."""
    index = Path(str(bare_env["BUCKET_SYNC_HOME"])) / "index.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(300)",
            str(index),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield index, holder
    finally:
        holder.terminate()
        holder.wait(timeout=30)


@pytest.mark.parametrize("command", [("status",), ("query", "SELECT 1")])
def test_locked_index_says_who_holds_it(
    bare_env: dict[str, str | None], held_index: tuple[Path, subprocess.Popen[str]], command: tuple[str]
) -> None:
    index, holder = held_index
    done = invoke(bare_env, *command)

    assert done.exit_code == 2, done.stdout + done.stderr
    message = done.stderr.strip()
    assert message.count("\n") == 0, message
    assert f"the index at {index} is locked by another process" in message
    assert f"PID {holder.pid})" in message
    assert "retry when that sync finishes" in message
    waited = re.search(r"waited (\d+(?:\.\d+)?)s", message)
    assert waited and float(waited[1]) <= 10, "a reader waits seconds for the lock, not two minutes"
