"""`bucket-sync`: the terminal face of the code location, for people, scripts and CI.

`sync` runs the very job the UI launches, in process, against the same Dagster instance, so a sync started here shows
up in the UI with its logs, metadata and check results.

Imports on demand: `--help`, `status` and `query` answer without importing Dagster, pyarrow, obstore or any cloud
SDK (importing Dagster alone costs seconds of CPU), so this module imports only the command-line machinery at the
top, and each command imports what it needs. tests/unit/test_cli_imports.py pins it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.terminal import LazyConsole, plain, printable
from resources.secrets import scrub

if TYPE_CHECKING:
    from resources.catalog import Connection
    from resources.index import IndexAccess

app = typer.Typer(
    help="Sync cloud buckets of images and videos into a DuckDB index, a CVAT manifest and Dagster assets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich-formatted help imports rich's markdown, syntax and traceback modules, which would double what
    # `bucket-sync --help` costs. Output still goes through rich (LazyConsole), which is only loaded when it prints.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # click's default of 80 cuts the commands' summaries short
)
out = LazyConsole(soft_wrap=True)
err = LazyConsole(stderr=True, soft_wrap=True)

EXIT_BLOCKED = 3

#: How long `status`, `query` and the summary wait for a sync's write lock: a person at a terminal wants an answer
#: (which process holds the index, and to retry) in seconds, not the two minutes a sync step waits for its turn.
READER_LOCK_WAIT_S = 3.0


def _fail(message: str, code: int = 2, *, multiline: bool = False) -> None:
    """Print one error and exit; the message is escaped, since keys, SQL and provider errors land in it."""
    err.print(f"[bold red]error:[/] {plain(scrub(message), multiline=multiline)}", highlight=False)
    raise typer.Exit(code)


def _reader_index() -> IndexAccess:
    """The index as the CLI reads it: the same file the sync writes, with a reader's short patience for its lock."""
    from resources.index import IndexAccess

    return IndexAccess(lock_timeout_s=READER_LOCK_WAIT_S)


@contextmanager
def _reading_index(index: IndexAccess) -> Iterator[None]:
    """Turn an index that cannot be read (corrupt, locked, missing) into one line of advice instead of a traceback."""
    import duckdb

    from resources.index import IndexUnavailable

    try:
        yield
    except IndexUnavailable as exc:
        _fail(str(exc))
    except duckdb.Error as exc:  # a damaged block that only a query reaches, after the file opened
        _fail(
            f"the index at {index.location} could not be read ({exc}); if this persists, move it aside and run "
            "`bucket-sync sync NAME --full` for each connection to rebuild it"
        )


def _connection(name: str) -> Connection:
    from resources.catalog import CatalogError, CatalogFile

    try:
        return CatalogFile().connection(name)
    except CatalogError as exc:
        _fail(str(exc))
        raise


def _sync(name: str, *, full: bool = False, allow_collapse: bool = False, quiet: bool = False) -> bool:
    """Run the sync job in process against the local instance; False when listing_collapse blocked it."""
    from pipelines.instance import local_instance
    from pipelines.runner import run_sync

    os.environ.setdefault("BUCKET_SYNC_PROGRESS", "bar")
    outcome = run_sync(
        name, local_instance(), full=full, allow_collapse=allow_collapse, log_level="WARNING" if quiet else "INFO"
    )
    if outcome.blocked_by:
        err.print(f"[bold red]blocked:[/] {plain(scrub(outcome.blocked_by))}", highlight=False)
        return False
    if not outcome.ok:
        failures = (printable(failure, multiline=True) for failure in outcome.failures)
        _fail(f"sync of '{name}' failed (run {outcome.result.run_id}):\n" + "\n".join(failures), multiline=True)
    return True


def _print_summary(name: str) -> None:
    from assets.snapshots import ListingState
    from pipelines.summary import sync_summary
    from resources.state import StateStore

    store = StateStore()
    state = ListingState.load(store, name)
    markers = state.folder_markers if state else 0
    index = _reader_index()
    with _reading_index(index):
        summary = sync_summary(name, index, store, folder_markers=markers).render()
    out.print(printable(summary, multiline=True), highlight=False, markup=False)


@app.command()
def demo() -> None:
    """Make the demo dataset if missing, sync the `demo` connection, and print a summary."""
    conn = _connection("demo")
    root = Path(conn.root or "")
    root = root if root.is_absolute() else Path(conn.base_dir) / root
    if not root.exists() or not any(root.iterdir()):
        try:  # the generator needs PyAV, the optional `demo` extra; an existing demo bucket syncs without it
            from demo.synth import write_demo_dataset
        except ImportError as exc:
            _fail(str(exc))
            raise
        written = write_demo_dataset(root)
        out.print(f"wrote the demo dataset: {len(written)} objects in {printable(str(root))}", markup=False)
    if _sync("demo", quiet=True):
        _print_summary("demo")
        out.print("Open the Dagster UI on the same instance with: make ui")


@app.command()
def sync(
    name: str,
    full: Annotated[bool, typer.Option("--full", help="Re-probe every object, ignoring cached facts.")] = False,
    allow_collapse: Annotated[
        bool, typer.Option("--allow-collapse", help="Accept a listing that lost more than half of the last one.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and the summary.")] = False,
) -> None:
    """Sync one connection: list, probe what changed, judge, write the manifest and the index."""
    _connection(name)
    if not _sync(name, full=full, allow_collapse=allow_collapse, quiet=quiet):
        raise typer.Exit(EXIT_BLOCKED)
    _print_summary(name)


@app.command()
def preview(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What a sync would see: count, bytes, extensions and sample keys, from the listing alone."""
    from assets.listing import preview as preview_listing
    from resources.bucket import ConnectionMisconfigured
    from resources.providers import open_bucket

    conn = _connection(name)
    try:
        seen = preview_listing(open_bucket(conn), conn)
    except ConnectionMisconfigured as exc:
        _fail(str(exc))
    report = {
        "connection": name,
        "objects": seen.get("listed", 0),
        "bytes": seen.get("bytes", 0),
        "extensions": seen.get("extensions", {}),
        "sample_keys": seen.get("samples", []),
        "folder_markers": seen.get("folder_markers", 0),
        "filtered_out": seen.get("filtered_out", 0),
    }
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out.print(f"[bold]{plain(name)}[/]: {report['objects']} objects, {report['bytes']:,} bytes", highlight=False)
    extensions = ", ".join(f"{printable(e)} {n}" for e, n in report["extensions"].items())
    out.print(f"by extension: {extensions}", highlight=False, markup=False)
    for key in report["sample_keys"]:
        out.print(f"  {printable(key)}", highlight=False, markup=False)


@app.command("test")
def test_connection(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Test a connection: prints one status (AVAILABLE, NOT_FOUND, FORBIDDEN, UNREACHABLE, MISCONFIGURED)."""
    from resources.providers import cors_summary
    from resources.providers import test_connection as run_connection_test

    conn = _connection(name)
    outcome = run_connection_test(conn)
    # CORS is audited only on a working connection, and never changes the exit status (the check only warns).
    cors = cors_summary(conn) if outcome.ok else None
    if as_json:
        payload = {**outcome.__dict__, "status": outcome.status.value, **({"cors": cors} if cors else {})}
        sys.stdout.write(scrub(json.dumps(payload, indent=2)) + "\n")
    else:
        colour = "green" if outcome.ok else "red"
        out.print(f"[bold {colour}]{outcome.status.value}[/] {name} ({outcome.provider})", highlight=False)
        out.print(f"  {printable(scrub(outcome.detail))}", highlight=False, markup=False)
        if outcome.remedy:
            out.print(f"  what to do: {printable(scrub(outcome.remedy))}", highlight=False, markup=False)
        if cors:
            line = f"  CORS {cors['origin']}: {cors['status']}: {cors['reason']}"
            out.print(printable(scrub(line)), highlight=False, markup=False)
            if cors["fix"]:
                out.print(
                    f"  CORS fix:\n{printable(scrub(cors['fix']), multiline=True)}", highlight=False, markup=False
                )
    raise typer.Exit(0 if outcome.ok else 1)


@app.command()
def status() -> None:
    """Every indexed connection with its last sync, object counts and violations."""
    from rich.table import Table
    from rich.text import Text

    from pipelines.summary import status_rows
    from resources.catalog_yaml import CatalogError, catalog_names, default_catalog_path

    index = _reader_index()
    with _reading_index(index):
        rows = status_rows(index)
    if not rows:
        out.print("nothing indexed yet: run `bucket-sync sync NAME` (or `bucket-sync demo`)")
        return
    try:
        # Names only: validating the entries would build the catalog's models (and check a schedule with Dagster).
        in_catalog: set[str] | None = catalog_names(default_catalog_path())
    except CatalogError:
        in_catalog = None  # status still answers from the index alone
    table = Table(
        "connection", "provider", "location", "profile", "last sync", "objects", "deleted", "accepted", "violations"
    )
    for r in rows:
        # The index flags detached connections at each sync; the catalog says so at once.
        detached = r["detached"] or (in_catalog is not None and r["name"] not in in_catalog)
        name = r["name"] + (" (detached)" if detached else "")
        last = r["last_synced"].strftime("%Y-%m-%d %H:%M:%S") if r["last_synced"] else "never"
        cells = [name, r["provider"], r["location"], r["profile"], last]
        counts = [r["objects"], r["deleted"], r["accepted"], r["violations"]]
        # Text cells: a str cell would be parsed as rich markup, and the index's values are data, not styling.
        table.add_row(*(Text(printable(str(cell))) for cell in [*cells, *counts]))
    out.print(table)


def _refused(exc: Exception) -> bool:
    """Whether DuckDB stopped the query for reaching past the index (files, network, settings), not for a mistake."""
    import duckdb

    text = str(exc)
    return isinstance(exc, duckdb.PermissionException) or any(
        reason in text for reason in ("the configuration has been locked", "attached in read-only mode")
    )


@app.command()
def query(sql: str) -> None:
    """Run SQL against the index and print the result; it can read the index and nothing else.

    The connection is read-only and sandboxed (IndexAccess.connect_untrusted): no file or network access, no ATTACH,
    no extensions, settings locked. A query that tries is refused with exit code 2 and the index is left untouched.
    """
    import duckdb

    index = _reader_index()
    with _reading_index(index), index.connect_untrusted() as con:
        try:
            result = con.sql(sql)
            text = "" if result is None else str(result)
        except duckdb.Error as exc:
            _fail(f"query {'refused' if _refused(exc) else 'failed'}: {exc}")
    if text:
        out.print(printable(text, multiline=True), highlight=False, markup=False)


@app.command()
def report(
    name: str,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Also write the page to this file (it always goes to the state store).")
    ] = None,
    fetch_thumbnails: Annotated[
        bool,
        typer.Option(
            "--fetch-thumbnails",
            help="For images without an embedded EXIF thumbnail, read the start of that object (up to --max-bytes).",
        ),
    ] = False,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1024, help="Most bytes read per object by --fetch-thumbnails.")
    ] = 2 * 1024 * 1024,
) -> None:
    """Write one self-contained HTML page: violations per rule over the last syncs, each offender with its fix."""
    from pipelines.report import write_report
    from resources.state import StateStore

    fetch = None
    if fetch_thumbnails:
        from resources.providers import open_bucket

        bucket = open_bucket(_connection(name))

        def fetch(key: str, length: int, etag: str | None) -> bytes:
            return bucket.read_range(key, 0, length, etag)

    index = _reader_index()
    with _reading_index(index):
        try:
            written = write_report(name, index, StateStore(), fetch=fetch, max_bytes=max_bytes, out=out_file)
        except LookupError as exc:
            _fail(str(exc))
            raise
    where = written.local_path or written.location
    out.print(
        printable(f"report of '{name}': {written.violations} violation(s), {written.thumbnails} thumbnail(s)"),
        highlight=False,
        markup=False,
    )
    out.print(printable(str(out_file or where)), highlight=False, markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
