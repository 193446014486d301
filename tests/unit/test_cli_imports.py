"""`bucket-sync --help`, `status`, `query` and `tables` (and `--json`) need no Dagster, pyarrow, obstore or cloud SDK.

Importing Dagster alone costs seconds of CPU and a hundred MB: a person asking for help or for the state of the index,
and a script polling `status` in CI, must not pay for it. Each code path runs in a fresh interpreter (this test process
has long since imported all of them), which then reports which of the heavy modules it loaded. The assertions are on
module sets only; what the paths cost is measured by benchmarks/cli_cost.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resources.catalog import dump_catalog
from resources.index import IndexAccess
from tests import cli_modules

#: Top-level packages none of the three paths may import; `dagster` also stands for dagster_aws, dagster_shared...
HEAVY = ("dagster", "pyarrow", "obstore", "boto3", "botocore", "google", "azure", "pandas")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A home with an index of two synced connections, `disk` and `old`, and a catalog without `old` that holds an
    entry of every provider, one with a schedule (the one field whose check is Dagster's own)."""
    home = tmp_path / "home"
    catalog = tmp_path / "connections.yaml"
    catalog.write_text(
        dump_catalog(
            [
                {"name": "disk", "provider": "local", "root": str(tmp_path / "bucket"), "schedule": "0 2 * * *"},
                {"name": "s3-photos", "provider": "s3", "bucket": "photos", "auth": {"mode": "anonymous"}},
                {"name": "gcs-photos", "provider": "gcs", "bucket": "photos", "auth": {"mode": "anonymous"}},
                {"name": "az-photos", "provider": "azure", "bucket": "photos", "options": {"account": "devstore"},
                 "auth": {"mode": "anonymous"}},
            ]
        )
    )  # fmt: skip
    index = IndexAccess(url=str(home / "index.duckdb"))
    with index.connect() as con:  # a writer's session creates the tables
        for name in ("disk", "old"):
            row = {"name": name, "provider": "local", "location": "bucket", "prefix": "", "profile": "strict"}
            index.record_connection(con, row)
        con.execute("UPDATE connections SET last_synced = now()")
    variables = ("BUCKET_SYNC_INDEX", "BUCKET_SYNC_STATE", "BUCKET_SYNC_INDEX_DATA", "DAGSTER_HOME")
    kept = {k: v for k, v in os.environ.items() if k not in variables}
    return {**kept, "BUCKET_SYNC_HOME": str(home), "BUCKET_SYNC_CATALOG": str(catalog), "COLUMNS": "200"}


def run_cli(env: dict[str, str], *args: str) -> tuple[int, list[str], str]:
    """Exit code, heavy modules loaded, and output of one CLI call in a fresh interpreter."""
    code, modules, output = cli_modules.run_cli(env, *args)
    return code, sorted(m for m in modules if m.startswith("dagster") or m in HEAVY), output


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--help",), id="help"),
        pytest.param(("sync", "--help"), id="sync-help"),
        pytest.param(("status",), id="status"),
        pytest.param(("query", "SELECT name, profile FROM connections"), id="query"),
        pytest.param(("status", "--json"), id="status-json"),
        pytest.param(("query", "SELECT name, profile FROM connections", "--json"), id="query-json"),
        pytest.param(("tables",), id="tables"),
        pytest.param(("tables", "--json"), id="tables-json"),
    ],
)
def test_help_status_and_query_import_no_dagster_arrow_or_sdk(env: dict[str, str], args: tuple[str, ...]) -> None:
    code, loaded, output = run_cli(env, *args)
    assert code == 0, output
    assert loaded == [], f"`bucket-sync {' '.join(args)}` imported {loaded}"
    if args[0] in ("status", "query"):
        assert "disk" in output and "strict" in output, output
    if args == ("status",):  # the catalog's names still tell which connections left it
        assert "old (detached)" in output and "disk (detached)" not in output, output
    if args[0] == "tables":
        assert "violations" in output and "remediation" in output, output


def test_status_still_answers_when_the_catalog_is_broken(env: dict[str, str]) -> None:
    """A catalog that cannot be read leaves status answering from the index alone, still without Dagster."""
    Path(env["BUCKET_SYNC_CATALOG"]).write_text("connections: [")
    code, loaded, output = run_cli(env, "status")
    assert code == 0 and "disk" in output and "(detached)" not in output, output
    assert loaded == []
