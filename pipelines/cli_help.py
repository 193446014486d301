"""What `bucket-sync --help` says beyond its commands: the exit codes a script tests and the environment it reads.

A script in CI branches on the exit code, and a person whose sync writes to the wrong folder looks for the variable
that moved it; neither should have to read the source. The lists are data, so tests/integration/test_cli_help.py
can hold them to the code: every variable the code reads appears here, and every exit code the CLI uses.
"""

from __future__ import annotations

#: The exit codes of every command, in the order a script tests them.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success; for `test`, the connection is AVAILABLE"),
    (1, "`test`: the connection is not AVAILABLE (the status says why)"),
    (2, "bad input or a failure: catalog, index, query, sync or usage"),
    (3, "`sync`: blocked by listing_collapse (see --allow-collapse)"),
)

#: The environment variables bucket-sync reads, with their defaults. Credentials are not listed: the catalog names
#: the variable that holds each one (auth.*_env), and the providers' own (AWS_*, GOOGLE_*, AZURE_*) apply.
#: Each line fits an 80-column terminal.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("BUCKET_SYNC_CATALOG", "the catalog (default ./connections.yaml)"),
    ("BUCKET_SYNC_HOME", "holds state and index by default (./.bucket-sync)"),
    ("BUCKET_SYNC_STATE", "state store: folder, s3://, gs:// or az:// URL"),
    ("BUCKET_SYNC_INDEX", "DuckDB file or ducklake:postgres:... URL"),
    ("BUCKET_SYNC_INDEX_DATA", "a DuckLake index's data files"),
    ("BUCKET_SYNC_EXECUTOR", "in_process (default), multiprocess, celery, k8s"),
    ("BUCKET_SYNC_DUCKDB_MEMORY", "DuckDB's memory limit over snapshots, e.g. 2GB"),
    ("BUCKET_SYNC_VERBOSE", "`1`: stack traces and Dagster's log, as -v"),
    ("DAGSTER_HOME", "the Dagster instance (default ./.dagster)"),
    ("DAGSTER_WEBSERVER_URL", "the UI's address, for links in notifications"),
    ("PGPASSWORD", "a DuckLake index's Postgres password"),
    ("AWS_ENDPOINT_URL", "an S3-compatible endpoint for an s3:// store"),
)


def epilog() -> str:
    """The text after the commands in `bucket-sync --help`. Each block starts with click's `\\b` marker, which keeps
    its lines as they are instead of rewrapping them into one paragraph."""
    width = max(len(name) for name, _ in ENVIRONMENT)
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)
    names = "\n".join(f"  {name:<{width}}  {meaning}" for name, meaning in ENVIRONMENT)
    return f"\b\nExit codes:\n{codes}\n\n\b\nEnvironment:\n{names}"
