"""Help that answers: every option and argument says what it does, `--help` lists the exit codes and the environment
the code reads, and `tables` lists every table and column of the index as a sync creates it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli import EXIT_BLOCKED, app
from pipelines.cli_help import ENVIRONMENT, EXIT_CODES
from resources.index import IndexAccess

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _commands() -> list[tuple[str, Any]]:
    """Every command of the CLI, walked from typer's click tree (typer 0.29 carries its own copy of click, so a
    group is whatever has `commands`), subcommands of groups included."""
    found: list[tuple[str, Any]] = []

    def walk(name: str, command: Any) -> None:
        found.append((name, command))
        for sub_name, sub in getattr(command, "commands", {}).items():
            walk(f"{name} {sub_name}", sub)

    walk("bucket-sync", typer.main.get_command(app))
    return found


def test_every_parameter_of_every_command_has_help() -> None:
    commands = _commands()
    assert {"bucket-sync status", "bucket-sync query", "bucket-sync tables"} <= {name for name, _ in commands}
    assert sum(len(command.params) for _, command in commands) >= 12  # the walk reached every command's options
    missing = [
        f"{name} {param.name}"
        for name, command in commands
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == []
    for name, command in commands:
        assert (command.help or "").strip(), f"{name} has no description"


@pytest.mark.parametrize("name", ["status", "query", "tables", "preview", "test"])
def test_json_options_say_what_they_print(name: str) -> None:
    done = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    assert re.search(r"--json\s+Print .*JSON", done.output), done.output


def test_help_lists_the_exit_codes_and_the_environment() -> None:
    done = runner.invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    text = done.output
    assert "Exit codes:" in text and "Environment:" in text
    for code, meaning in EXIT_CODES:
        assert f"  {code}  {meaning}" in text
    for name, meaning in ENVIRONMENT:
        assert re.search(rf"^\s+{name}\s+{re.escape(meaning)}$", text, re.MULTILINE), name
    epilog = text[text.index("Exit codes:") :]
    assert all(len(line) <= 80 for line in epilog.splitlines()), epilog
    assert {code for code, _ in EXIT_CODES} == {0, 1, 2, EXIT_BLOCKED}


def test_every_environment_variable_the_code_reads_is_in_the_help() -> None:
    """Grep the shipped code for the variables it reads by name: each must be documented in `--help`."""
    read = re.compile(
        r"""(?:environ(?:\.get|\.setdefault)?\(?\[?|getenv\(|_ENV = |VARIABLE = )["']([A-Z][A-Z0-9_]+)["']"""
    )
    names: set[str] = set()
    for folder in ("assets", "checks", "media", "pipelines", "resources"):
        for path in (REPO / folder).rglob("*.py"):
            names.update(read.findall(path.read_text()))
    assert {"BUCKET_SYNC_CATALOG", "BUCKET_SYNC_HOME", "BUCKET_SYNC_EXECUTOR", "DAGSTER_HOME"} <= names
    documented = {name for name, _ in ENVIRONMENT}
    # Credentials are named by the catalog (auth.*_env) and read by the providers' SDKs: not settings of ours.
    credentials = {"AWS_ACCESS_KEY_ID"}
    assert names - credentials <= documented, sorted(names - credentials - documented)


def test_tables_lists_every_table_and_column_a_sync_creates(tmp_path: Path) -> None:
    index = IndexAccess(url=str(tmp_path / "index.duckdb"))
    with index.connect():  # a writer's session creates the tables, as a sync's does
        pass
    with duckdb.connect(str(tmp_path / "index.duckdb"), read_only=True) as con:
        created = con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal "
            "ORDER BY table_oid, column_index"
        ).fetchall()
    done = runner.invoke(app, ["tables", "--json"])
    assert done.exit_code == 0, done.output
    listed = [(t["table"], c["name"], c["type"]) for t in json.loads(done.output) for c in t["columns"]]
    assert sorted(listed) == sorted(created)
    tables = [t["table"] for t in json.loads(done.output)]
    assert len(tables) == len(set(tables)) and set(tables) == {table for table, _, _ in created}

    shown = runner.invoke(app, ["tables"], env={"COLUMNS": "80"}).output
    assert "…" not in shown
    for table, column, kind in created:
        assert re.search(rf"^{column}\s+{re.escape(kind)}\s+(yes|no)\s*$", shown, re.MULTILINE), (table, column)
    assert all(re.search(rf"^{table}\s*$", shown, re.MULTILINE) for table, _, _ in created)
