"""`bucket-sync` facing hostile input: SQL that reaches past the index, keys that are terminal commands, and an index
that is corrupt or held by another process.

One real sync (a subprocess, as a person runs it) builds the index once for the module; the many attacks then run
through the same typer app in process (CliRunner), which is the real CLI without paying a process start per case.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from demo import synth
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
        "BUCKET_SYNC_VERBOSE": None,
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


#: A key that is a terminal attack: clear screen, red text, bell, carriage return, a one-byte C1 CSI and a bidi
#: override that would show `gpj.exe` as `exe.jpg`.
HOSTILE_KEY = "evil\x1b[2J\x1b[31mred\x07\r\x9b6n\u202egpj.exe.jpg"
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\x9b", "\u202e")
#: A folder name with the same kind of payload: it reaches `status` as the location (the bucket's folder) and the
#: sync summary as a path (the home that holds the manifest and the index).
HOSTILE_DIR = "bucket\x1b]0;owned\x07\u202e"
HOSTILE_HOME = "home\x1b[2J\x9b\u202e"


@dataclass
class Synced:
    """A real index made by a real sync of a local bucket that holds a hostile key, and the env that points at it."""

    env: dict[str, str | None]
    index: Path
    root: Path
    tmp: Path
    sync_stdout: str
    pristine: bytes


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Synced:
    tmp = tmp_path_factory.mktemp("cli-safety")
    root = tmp / HOSTILE_DIR
    root.mkdir()
    (root / "plain.png").write_bytes(synth.png(16, 16))
    (root / HOSTILE_KEY).write_bytes(synth.jpeg(32, 24))
    catalog = tmp / "connections.yaml"
    catalog.write_text(yaml.safe_dump({"connections": [{"name": "disk", "provider": "local", "root": str(root)}]}))
    env = cli_env(tmp / HOSTILE_HOME, catalog, tmp / "dagster-home")
    process_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    done = subprocess.run(
        [CLI, "sync", "disk", "--quiet"], capture_output=True, text=True, env=process_env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    index = tmp / HOSTILE_HOME / "index.duckdb"
    return Synced(env=env, index=index, root=root, tmp=tmp, sync_stdout=done.stdout, pristine=index.read_bytes())


@pytest.fixture
def indexed(synced: Synced) -> Synced:
    """The module's index as the sync left it, so one test that damaged it (before the fix) cannot fail the others."""
    if synced.index.read_bytes() != synced.pristine:
        synced.index.write_bytes(synced.pristine)
    return synced


# --- 14: `query` reads the index and nothing else -------------------------------------------------------------------


def test_query_still_reads_the_index_under_the_sandbox(indexed: Synced) -> None:
    sql = "SELECT count(*) AS n FROM objects WHERE connection = 'disk'"
    done = invoke(indexed.env, "query", sql)
    assert done.exit_code == 0, done.stderr
    assert re.search(r"^\s*n\n─+\n\s*2\n\(1 row\)$", done.stdout.strip(), re.MULTILINE), done.stdout
    as_json = invoke(indexed.env, "query", sql, "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == [{"n": 2}], as_json.stdout


def attacks(tmp: Path, index: Path) -> dict[str, str]:
    outside, other_db = tmp / "outside.txt", tmp / "other.duckdb"
    return {
        "copy-over-the-index": f"COPY (SELECT 1) TO '{index}'",
        "copy-to-another-path": f"COPY (SELECT * FROM objects) TO '{tmp / 'leak.csv'}'",
        "export-database": f"EXPORT DATABASE '{tmp / 'export'}'",
        "read-text-outside": f"SELECT * FROM read_text('{outside}')",
        "read-csv-outside": f"SELECT * FROM read_csv('{outside}')",
        "read-etc-passwd": "SELECT * FROM read_text('/etc/passwd')",
        "attach-another-database": f"ATTACH '{other_db}' AS other; SELECT * FROM other.t",
        "install-extension": "INSTALL httpfs",
        "load-extension": "LOAD httpfs",
        "set-external-access-back": f"SET enable_external_access = true; SELECT * FROM read_text('{outside}')",
        "unlock-configuration": "SET lock_configuration = false",
        "reset-external-access": "RESET enable_external_access",
    }


ATTACKS = list(attacks(Path("/t"), Path("/i")))


@pytest.mark.parametrize("attack", ATTACKS)
def test_query_refuses_to_reach_past_the_index(indexed: Synced, attack: str) -> None:
    outside, other_db = indexed.tmp / "outside.txt", indexed.tmp / "other.duckdb"
    outside.write_text("secret,line\nfrom,outside\n")
    if not other_db.exists():
        import duckdb

        with duckdb.connect(str(other_db)) as con:
            con.execute("CREATE TABLE t AS SELECT 'other database' AS v")
    before = digest(indexed.index)
    made_before = {*indexed.tmp.iterdir(), *indexed.index.parent.iterdir()}

    done = invoke(indexed.env, "query", attacks(indexed.tmp, indexed.index)[attack])

    assert done.exit_code == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: query refused: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "secret" not in done.stdout and "other database" not in done.stdout
    assert digest(indexed.index) == before, "the index must stay byte-identical"
    made_after = {*indexed.tmp.iterdir(), *indexed.index.parent.iterdir()}
    assert made_after == made_before, "no file may be written, beside the index or anywhere else we can see"


# --- 16: what reaches the terminal is escaped ------------------------------------------------------------------------


def assert_no_raw_controls(text: str) -> None:
    leaked = [c for c in RAW_CONTROLS if c in text]
    assert not leaked, f"raw control characters reached the terminal: {leaked!r} in {text!r}"


def test_preview_escapes_keys(indexed: Synced) -> None:
    done = invoke(indexed.env, "preview", "disk")
    assert done.exit_code == 0, done.stderr
    assert_no_raw_controls(done.stdout)
    assert "evil\\x1b[2J\\x1b[31mred\\x07\\x0d\\x9b6n\\u202egpj.exe.jpg" in done.stdout


def test_preview_json_is_escaped_by_json_itself(indexed: Synced) -> None:
    import json

    done = invoke(indexed.env, "preview", "disk", "--json")
    assert done.exit_code == 0, done.stderr
    assert_no_raw_controls(done.stdout)
    assert HOSTILE_KEY in json.loads(done.stdout)["sample_keys"], "JSON keeps the exact key, escaped as JSON"


def test_query_escapes_values(indexed: Synced) -> None:
    done = invoke(indexed.env, "query", "SELECT key FROM objects WHERE key LIKE 'evil%'")
    assert done.exit_code == 0, done.stderr
    assert_no_raw_controls(done.stdout)
    assert "\\x9b6n\\u202egpj.exe.jpg" in done.stdout
    assert done.stdout.count("\n") >= 4, "a result table keeps its line breaks"


def test_query_error_messages_are_escaped(indexed: Synced) -> None:
    done = invoke(indexed.env, "query", "SELECT CAST(key AS INTEGER) FROM objects WHERE key LIKE 'evil%'")
    assert done.exit_code == 2
    assert done.stderr.startswith("error: query failed: ")
    assert_no_raw_controls(done.stderr)


def test_status_escapes_locations(indexed: Synced) -> None:
    done = invoke(indexed.env, "status")
    assert done.exit_code == 0, done.stderr
    assert_no_raw_controls(done.stdout)
    assert "bucket\\x1b]0;owned\\x07\\u202e" in done.stdout


def test_sync_summary_escapes_paths(indexed: Synced) -> None:
    """The summary prints the manifest and index paths, and here the home folder that holds both is hostile."""
    assert "objects listed : 2" in indexed.sync_stdout
    assert_no_raw_controls(indexed.sync_stdout)
    assert "home\\x1b[2J\\x9b\\u202e" in indexed.sync_stdout
