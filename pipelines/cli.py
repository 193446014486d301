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

from pipelines.cli_help import epilog
from pipelines.terminal import LazyConsole, plain, printable
from resources.secrets import scrub

if TYPE_CHECKING:
    from pipelines.live import LiveView
    from pipelines.runner import SyncOutcome
    from resources.catalog import Connection
    from resources.index import IndexAccess

app = typer.Typer(
    help="Sync cloud buckets of images and videos into a DuckDB index, a CVAT manifest and Dagster assets.",
    epilog=epilog(),
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

#: A connection's name, as every command that takes one asks for it.
NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="The connection's name in the catalog (connections.yaml).")
]

#: How long `status`, `query` and the summary wait for a sync's write lock: a person at a terminal wants an answer
#: (which process holds the index, and to retry) in seconds, not the two minutes a sync step waits for its turn.
READER_LOCK_WAIT_S = 3.0


def _fail(message: str, code: int = 2, *, multiline: bool = False) -> None:
    """Print one error and exit; the message is escaped, since keys, SQL and provider errors land in it."""
    live = sys.modules.get("pipelines.live")  # loaded only by a sync: its bar must not draw over the error
    if live is not None:
        live.stop_active()
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


VERBOSE_HELP = "Print Dagster's full run log, with stack traces; without it, a failure is one line: cause and fix."


def _live_view(*, quiet: bool, verbose: bool, lines: int | None = None) -> LiveView:
    """The terminal view of a sync, started before Dagster is imported so a person sees it begin at once."""
    import logging

    from pipelines.live import LiveView

    level = lines if lines is not None else logging.WARNING if quiet else logging.INFO
    # A live bar on a terminal; elsewhere (CI, a pipe) the steps' own lines, which say the same in words.
    on_tty = sys.stderr.isatty()
    return LiveView(bar=not quiet, line_level=max(level, logging.WARNING) if on_tty else level, verbose=verbose)


def _sync(
    name: str, view: LiveView, *, full: bool = False, allow_collapse: bool = False, verbose: bool = False
) -> SyncOutcome:
    """Run the sync job in this process against the local instance, drawing its progress on `view`."""
    from assets.progress import watching
    from pipelines.instance import local_instance
    from pipelines.runner import run_sync

    # Dagster's console log prints each failure with its stack trace, and every skipped step after it as an error:
    # the view prints the run's messages as single lines instead, and the CLI ends with the cause. -v restores it.
    with watching(view.on_progress):
        return run_sync(
            name,
            local_instance(),
            full=full,
            allow_collapse=allow_collapse,
            log_level="INFO" if verbose else "CRITICAL",
            on_event=view.on_event,
        )


def _conclude(name: str, outcome: SyncOutcome) -> bool:
    """After the view is gone: False when listing_collapse blocked the sync; a failure exits with its cause last."""
    if outcome.blocked_by:
        err.print(f"[bold red]blocked:[/] {plain(scrub(outcome.blocked_by.replace('NAME', name)))}", highlight=False)
        return False
    if not outcome.ok:
        failed = list(zip(outcome.failed_steps, outcome.failures, strict=True))
        if not failed:  # a run that failed outside any step (an executor or a resource that would not start)
            failed = [("the run", "Dagster reported a failure outside the steps; run again with -v to see it")]
        for step, cause in failed[1:]:  # the first failure is the cause of the others: it goes last
            err.print(f"[red]also:[/] {plain(step)} failed: {plain(scrub(cause))}", highlight=False)
        step, cause = failed[0]
        _fail(f"sync of '{name}' failed in {step}: {cause} (run {outcome.run_id}; -v prints Dagster's full log)")
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
def demo(verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False) -> None:
    """Sync the bundled `demo` connection and print a summary.

    Writes the demo dataset on the local provider the first time, then syncs it as `sync demo` would.
    """
    import logging

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
    with _live_view(quiet=False, verbose=verbose, lines=logging.WARNING) as view:
        outcome = _sync("demo", view, verbose=verbose)
    if _conclude("demo", outcome):
        _print_summary("demo")
        out.print("Open the Dagster UI on the same instance with: make ui")


@app.command()
def sync(
    name: NameArgument,
    full: Annotated[bool, typer.Option("--full", help="Re-probe every object, ignoring cached facts.")] = False,
    allow_collapse: Annotated[
        bool, typer.Option("--allow-collapse", help="Accept a listing that lost more than half of the last one.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or lines: only warnings, errors and the summary.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Sync one connection: list, probe, judge, manifest, index.

    Lists the bucket, probes only new and changed objects from their headers, judges them against the profile's
    rules, and writes the CVAT manifest and the index.
    """
    with _live_view(quiet=quiet, verbose=verbose) as view:
        _connection(name)
        outcome = _sync(name, view, full=full, allow_collapse=allow_collapse, verbose=verbose)
    if not _conclude(name, outcome):
        raise typer.Exit(EXIT_BLOCKED)
    _print_summary(name)


@app.command()
def preview(
    name: NameArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the preview as one JSON object, for scripts.")] = False,
) -> None:
    """What a sync would see, from the listing alone.

    Count, bytes, counts by extension and sample keys; no object is read.
    """
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
    from pipelines.figures import count, plural, size

    figures = f"{plural(report['objects'], 'object')}, {size(report['bytes'])}"
    out.print(f"[bold]{plain(name)}[/]: {figures}", highlight=False)
    extensions = ", ".join(f"{printable(e)} {count(n)}" for e, n in report["extensions"].items())
    out.print(f"by extension: {extensions}", highlight=False, markup=False)
    for key in report["sample_keys"]:
        out.print(f"  {printable(key)}", highlight=False, markup=False)


@app.command("test")
def test_connection(
    name: NameArgument,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the status, detail and remedy as one JSON object, for scripts.")
    ] = False,
) -> None:
    """Test a connection: one status, and what to do.

    The status is AVAILABLE, NOT_FOUND, FORBIDDEN, UNREACHABLE or MISCONFIGURED; the exit code is 0 only for
    AVAILABLE.
    """
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
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the same rows as a JSON array, with exact timestamps, for scripts.")
    ] = False,
) -> None:
    """Each indexed connection: its last sync, counts and violations."""
    from pipelines.summary import status_rows
    from resources.catalog_yaml import CatalogError, catalog_names, default_catalog_path

    index = _reader_index()
    with _reading_index(index):
        rows = status_rows(index)
    try:
        # Names only: validating the entries would build the catalog's models (and check a schedule with Dagster).
        in_catalog: set[str] | None = catalog_names(default_catalog_path())
    except CatalogError:
        in_catalog = None  # status still answers from the index alone
    for r in rows:  # the index flags detached connections at each sync; the catalog says so at once
        r["detached"] = bool(r["detached"] or (in_catalog is not None and r["name"] not in in_catalog))
    if as_json:
        from pipelines.table_view import as_json as rows_as_json

        sys.stdout.write(rows_as_json(rows))
        return
    if not rows:
        out.print("nothing indexed yet: run `bucket-sync sync NAME` (or `bucket-sync demo`)")
        return
    from pipelines.table_view import status_table

    out.print(status_table(rows))


def _refused(exc: Exception) -> bool:
    """Whether DuckDB stopped the query for reaching past the index (files, network, settings), not for a mistake."""
    import duckdb

    text = str(exc)
    return isinstance(exc, duckdb.PermissionException) or any(
        reason in text for reason in ("the configuration has been locked", "attached in read-only mode")
    )


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(metavar="SQL", help="One SQL statement over the index's tables (see `bucket-sync tables`).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rows as a JSON array of objects, one per row, for scripts.")
    ] = False,
) -> None:
    """Run read-only SQL against the index and print the rows.

    It can read the index and nothing else. The connection is read-only and sandboxed
    (IndexAccess.connect_untrusted): no file or network access, no ATTACH, no extensions, settings locked. A query
    that tries is refused with exit code 2 and the index is left untouched. Fix commands (a `remediation` column)
    print below the table, one per line, whole, so they can be pasted.
    """
    import duckdb

    index = _reader_index()
    columns: list[str] = []
    rows: list[tuple[object, ...]] = []
    with _reading_index(index), index.connect_untrusted() as con:
        try:
            result = con.sql(sql)
            if result is not None:
                columns, rows = list(result.columns), result.fetchall()
        except duckdb.Error as exc:
            _fail(f"query {'refused' if _refused(exc) else 'failed'}: {exc}")
    from pipelines.table_view import as_json as rows_as_json
    from pipelines.table_view import print_rows

    if as_json:
        sys.stdout.write(rows_as_json([dict(zip(columns, row, strict=True)) for row in rows]))
    elif columns:
        print_rows(out, columns, rows)


@app.command()
def tables(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the tables and their columns as JSON, for scripts.")
    ] = False,
) -> None:
    """The index's tables and their columns, with types.

    These are what `bucket-sync query` reads; the list comes from the index's own DDL.
    """
    from pipelines.index_tables import index_tables

    found = index_tables()
    if as_json:
        payload = [
            {"table": t.name, "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in t.columns]}
            for t in found
        ]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    from rich.text import Text

    from pipelines.table_view import add_text_column, compact_table

    for t in found:
        table = compact_table(title=t.name)
        add_text_column(table, "column", wraps=False)
        add_text_column(table, "type")
        add_text_column(table, "null", wraps=False)
        for c in t.columns:
            table.add_row(Text(c.name), Text(c.type), Text("yes" if c.nullable else "no"))
        out.print(table)


def _verbose_requested() -> bool:
    return bool({"-v", "--verbose"} & set(sys.argv[1:])) or os.environ.get("BUCKET_SYNC_VERBOSE") == "1"


@app.command()
def report(
    name: NameArgument,
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
    """One HTML page: violations per rule over time, each with its fix.

    Self-contained (inline chart, thumbnails as data: URIs), written through the state store and, with --out, to a
    file; each offending object with a thumbnail and the command that fixes it.
    """
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
    """The `bucket-sync` command. An error no command turned into advice still ends in one line, not a traceback,
    unless -v (or BUCKET_SYNC_VERBOSE=1) asks for the stack trace."""
    try:
        app()
    except Exception as exc:
        if _verbose_requested():
            raise
        live = sys.modules.get("pipelines.live")
        if live is not None:
            live.stop_active()
        text = " ".join(scrub(str(exc)).split())
        err.print(
            f"[bold red]error:[/] {plain(type(exc).__name__)}: {plain(text)} (run again with -v, or "
            "BUCKET_SYNC_VERBOSE=1, for the stack trace)",
            highlight=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
