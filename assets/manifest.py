"""`cvat_manifest`: the accepted images as a CVAT image manifest (version 1.1), built from facts alone.

CVAT's own tooling opens every image to write this file; here it costs no read at all, because the probes already
know each image's size. The manifest is staged under the run's id and published by `media_index` once the sync is in
the index (assets/publish.py), so the published manifest always matches the index. A manifest identical to the
published one is not staged, so an unchanged re-sync leaves the published file (and its modification time) alone.
"""

import filecmp
import json
import shutil
from pathlib import Path

import duckdb
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.partitions import connections_partitions
from assets.probes import media_probes
from assets.snapshots import SnapshotKeys
from media.cvat import EXTENSION_PATTERN, NAME_SQL, split_name
from resources.catalog import CatalogResource, Connection
from resources.scratch import scratch_duckdb
from resources.secrets import scrubbed_errors
from resources.state import StateStore

HEADER = ({"version": "1.1"}, {"type": "images"})


def manifest_line(conn: Connection, key: str, width: int, height: int) -> str:
    """One compact JSON line: the key relative to the prefix, split into name and extension (with its dot)."""
    name, extension = split_name(conn.relative_key(key))
    return json.dumps(
        {"name": name, "extension": extension, "width": width, "height": height},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def write_manifest(con: duckdb.DuckDBPyConnection, probes: Path, prefix: str, target: Path) -> int:
    """Write the manifest of the accepted images in `probes` to `target` in one query; returns how many images.

    The same lines `manifest_line` makes (DuckDB's JSON writer: compact, UTF-8 as is; only control characters, which
    no accepted key holds, would be escaped differently), written by DuckDB in key order with no Python per row.
    """
    body = target.with_name(target.name + ".body")
    relative = "CASE WHEN starts_with(key, $prefix) THEN substr(key, length($prefix) + 1) ELSE key END"
    images = con.sql(
        f"""
        SELECT {NAME_SQL} AS name, coalesce(regexp_extract(key, '{EXTENSION_PATTERN}', 1), '') AS extension,
               manifest_width AS width, manifest_height AS height
        FROM (SELECT {relative} AS key, key AS full_key, manifest_width, manifest_height
              FROM read_parquet($p) WHERE accepted AND kind = 'image')
        ORDER BY full_key
        """,
        params={"p": str(probes), "prefix": prefix},
    )
    con.execute("SET preserve_insertion_order = true")  # COPY keeps the ORDER BY only with it
    images.create_view("manifest_lines")
    (count,) = con.execute(f"COPY manifest_lines TO {_sql_string(str(body))} (FORMAT json)").fetchone()
    with target.open("wb") as out:
        for line in HEADER:
            out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        with body.open("rb") as lines:
            shutil.copyfileobj(lines, out)
    body.unlink()
    return int(count)


@asset(
    partitions_def=connections_partitions,
    deps=[media_probes],
    group_name="sync",
    kinds={"json"},
    description=(
        "CVAT image manifest (manifest.jsonl, v1.1) of the accepted images, sorted by key; staged here and published "
        "with the index commit."
    ),
)
@scrubbed_errors
def cvat_manifest(
    context: AssetExecutionContext, catalog: CatalogResource, state_store: StateStore
) -> MaterializeResult:
    name = context.partition_key
    keys = SnapshotKeys(name)
    conn = catalog.connection(name)
    with state_store.scratch_dir(name, "manifest") as scratch:
        probes, manifest = scratch / "probes.parquet", scratch / "manifest.jsonl"
        if not state_store.fetch(keys.probes, probes):
            raise Failure(f"connection '{name}': no probes in the state store; materialize media_probes first")
        con = scratch_duckdb(scratch / ".spill")
        images = write_manifest(con, probes, conn.prefix, manifest)
        rejected = con.execute(
            "SELECT count(*) FROM read_parquet($p) WHERE kind = 'image' AND NOT accepted", {"p": str(probes)}
        ).fetchall()[0][0]
        con.close()
        published = scratch / "published.jsonl"
        unchanged = state_store.fetch(keys.manifest, published) and filecmp.cmp(manifest, published, shallow=False)
        if not unchanged:
            state_store.put(keys.staged_manifest(context.run.run_id), manifest)
    target = f"{state_store.location}/{keys.manifest}"
    done = "unchanged, left as published at" if unchanged else "staged for"
    context.log.info(f"'{name}': manifest of {images} images ({rejected} rejected images left out) {done} {target}")
    return MaterializeResult(
        metadata={
            "images": MetadataValue.int(images),
            "rejected_images": MetadataValue.int(int(rejected)),
            "path": MetadataValue.text(target),
            "changed": MetadataValue.bool(not unchanged),
        }
    )
