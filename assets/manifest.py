"""`cvat_manifest`: the accepted images as a CVAT image manifest (version 1.1), built from facts alone.

CVAT's own tooling opens every image to write this file; here it costs no read at all, because the probes already
know each image's size. The manifest is staged under the run's id and published by `media_index` once the sync is in
the index (assets/publish.py), so the published manifest always matches the index.
"""

import json

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.partitions import connections_partitions
from assets.probes import media_probes
from assets.snapshots import SnapshotKeys
from media.cvat import split_name
from resources.catalog import Connection
from resources.catalog_resource import CatalogResource
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
        reader = con.sql(
            "SELECT key, manifest_width, manifest_height FROM read_parquet($p) WHERE accepted AND kind = 'image' "
            "ORDER BY key",
            params={"p": str(probes)},
        ).to_arrow_reader(4096)
        images = 0
        with manifest.open("w", encoding="utf-8") as out:
            for line in HEADER:
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            for batch in reader:
                for row in batch.to_pylist():
                    out.write(manifest_line(conn, row["key"], row["manifest_width"], row["manifest_height"]) + "\n")
                    images += 1
        rejected = con.execute(
            "SELECT count(*) FROM read_parquet($p) WHERE kind = 'image' AND NOT accepted", {"p": str(probes)}
        ).fetchall()[0][0]
        con.close()
        state_store.put(keys.staged_manifest(context.run.run_id), manifest)
    target = f"{state_store.location}/{keys.manifest}"
    context.log.info(f"'{name}': manifest of {images} images ({rejected} rejected images left out) staged for {target}")
    return MaterializeResult(
        metadata={
            "images": MetadataValue.int(images),
            "rejected_images": MetadataValue.int(int(rejected)),
            "path": MetadataValue.text(target),
        }
    )
