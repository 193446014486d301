"""`cvat_manifest`: the accepted images as a CVAT image manifest (version 1.1), and a CVAT video manifest for each
accepted video, built from facts alone.

CVAT's own tooling opens every image, and decodes every video, to write these files; here they cost no read at all,
because the probes already know each image's size and each video's key frames (read from its moov box, media/mp4.py,
and carried in the probes snapshot). The manifests are staged under the run's id and published by `media_index` once
the sync is in the index (assets/publish.py), so the published manifests always match the index.
A manifest identical to the published one is not staged, so an unchanged re-sync leaves the published file (and
its modification time) alone.
"""

import filecmp
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.partitions import connections_partitions
from assets.probes import media_probes
from assets.snapshots import SnapshotKeys
from media.cvat import EXTENSION_PATTERN, NAME_SQL, split_name, video_manifest_lines
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


#: Accepted videos without a manifest shown, with their reason, in the step's metadata.
_EXAMPLES = 10
#: Longest file name (bytes) most file systems take: a video manifest is named `<file name>.jsonl`.
_NAME_MAX = 255


def video_manifest_text(key: str, row: dict[str, Any]) -> str:
    """The CVAT video manifest of one probed video: named by its file name, as CVAT's manifest tool names it."""
    lines = video_manifest_lines(
        key.rsplit("/", 1)[-1], row["width"], row["height"], row["decoded_frames"], row["keyframes"]
    )
    return "".join(line + "\n" for line in lines)


def stage_video_manifests(
    con: duckdb.DuckDBPyConnection, probes: Path, conn: Connection, bundle: Path
) -> tuple[int, int, list[tuple[str, str]]]:
    """Write every accepted video's manifest into `bundle`, one JSON line each ({"video": relative key, "manifest":
    text}), so a run's video manifests are staged and published as one object.

    Returns how many it wrote, how many accepted videos have none, and the first few of those with the probe's reason.
    """
    columns = con.sql("SELECT * FROM read_parquet($p) LIMIT 0", params={"p": str(probes)}).columns
    bundle.touch()
    if "keyframes" not in columns:  # a snapshot from a release that did not list key frames
        return 0, 0, []
    reader = con.sql(
        "SELECT key, width, height, decoded_frames, keyframes, notes FROM read_parquet($p) "
        "WHERE accepted AND kind = 'video' ORDER BY key",
        params={"p": str(probes)},
    ).to_arrow_reader(256)
    written = missing = 0
    examples: list[tuple[str, str]] = []
    with bundle.open("w", encoding="utf-8") as out:
        for batch in reader:
            for row in batch.to_pylist():
                if not row["keyframes"] or not row["decoded_frames"] or not row["width"] or not row["height"]:
                    missing += 1
                    if len(examples) < _EXAMPLES:
                        reasons = [n for n in row["notes"] or [] if n.startswith("no CVAT video manifest")]
                        examples.append((row["key"], reasons[0] if reasons else "no key frames were listed"))
                    continue
                relative = conn.relative_key(row["key"])
                if len(f"{relative.rsplit('/', 1)[-1]}.jsonl".encode()) > _NAME_MAX:
                    missing += 1
                    if len(examples) < _EXAMPLES:
                        examples.append((row["key"], "its file name is too long to name a manifest after it"))
                    continue
                line = {"video": relative, "manifest": video_manifest_text(row["key"], row)}
                out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
                written += 1
    return written, missing, examples


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
        "CVAT image manifest (manifest.jsonl, v1.1) of the accepted images, sorted by key, and a CVAT video manifest "
        "(videos/<key>.jsonl) of each accepted video; staged here and published with the index commit."
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
        bundle = scratch / "video-manifests.jsonl"
        videos, missing, examples = stage_video_manifests(con, probes, conn, bundle)
        con.close()
        if not images:  # CVAT refuses a manifest without items: stage "none" (an empty file) instead
            manifest.write_bytes(b"")
        published = scratch / "published.jsonl"
        unchanged = (
            bool(images)
            and state_store.fetch(keys.manifest, published)
            and filecmp.cmp(manifest, published, shallow=False)
        )
        # The video manifests are staged first: a staged image manifest means the run's manifests are all staged.
        state_store.put(keys.staged_video_manifests(context.run.run_id), bundle)
        if not unchanged:
            state_store.put(keys.staged_manifest(context.run.run_id), manifest)
    target = f"{state_store.location}/{keys.manifest}"
    not_published = (
        f"no image was accepted ({rejected} rejected), and CVAT refuses a manifest without items: no image manifest "
        "is published (the violations say why each image was left out)"
    )
    if images:
        done = "unchanged, left as published at" if unchanged else "staged for"
        context.log.info(
            f"'{name}': manifest of {images} images ({rejected} rejected images left out) {done} {target}, and "
            f"{videos} video manifests staged"
            + (f"; {missing} accepted videos have no video manifest (see the step's metadata)" if missing else "")
        )
    else:
        context.log.warning(f"'{name}': {not_published}; {videos} video manifests staged")
    return MaterializeResult(
        metadata={
            "images": MetadataValue.int(images),
            "rejected_images": MetadataValue.int(int(rejected)),
            "path": MetadataValue.text(target if images else "(none)"),
            "published": MetadataValue.bool(bool(images)),
            **({} if images else {"not_published": MetadataValue.text(not_published)}),
            "video_manifests": MetadataValue.int(videos),
            "video_manifests_path": MetadataValue.text(f"{state_store.location}/{keys.video_manifest_prefix}"),
            "videos_without_manifest": MetadataValue.int(missing),
            "videos_without_manifest_examples": MetadataValue.md(
                "\n".join(f"- `{key}`: {reason}" for key, reason in examples) or "none"
            ),
            "changed": MetadataValue.bool(not unchanged),
        }
    )
