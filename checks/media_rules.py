"""The rule checks on `media_probes`: one asset check per rule, evaluated together in one step over one snapshot.

They report what the sync found; they do not write the index. The violation rows reach the index's `violations`
table in `media_index`'s transaction, together with the objects and facts they describe, so a sync whose index
commit fails leaves the previous sync's violations in place instead of half of a new sync.
"""

from collections.abc import Iterator
from pathlib import Path

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    Failure,
    MetadataValue,
    multi_asset_check,
)

from assets.partitions import connections_partitions
from assets.probes import media_probes
from assets.snapshots import SnapshotKeys
from assets.typed_metadata import table
from media.rules import ALL_RULES, get_profile
from resources.catalog_resource import CatalogResource
from resources.secrets import scrubbed_errors
from resources.state import StateStore

EXAMPLES = 5

RULE_DESCRIPTIONS = {
    "readable": "Every object can be parsed from its header; truncated, fake and corrupt files are listed.",
    "supported_format": "Every object is an image or video format the connection's profile accepts.",
    "exif_orientation": "Images carry no EXIF orientation or orientation 1 (Datature Vi rejects the rest).",
    "mp4_brand": "MP4 videos have major brand mp42.",
    "mp4_pixel_format": "Videos use pixel format yuv420p.",
    "manifest_name": "Every image and video has a manifest name CVAT can address and no other object shares.",
    "extension_mismatch": "Every image's name ends in an extension CVAT treats as an image.",
}


#: The examples' columns: on the check's own result, so a person sees the objects and their fixes at once.
EXAMPLE_COLUMNS = [
    ("key", "string", "the object's full key"),
    ("problem", "string", "what breaks the rule"),
    ("fix", "string", "a command that fixes the file"),
]


@multi_asset_check(
    name="media_rules",
    specs=[
        AssetCheckSpec(
            rule, asset=media_probes, description=RULE_DESCRIPTIONS[rule], partitions_def=connections_partitions
        )
        for rule in ALL_RULES
    ],
    can_subset=False,
)
@scrubbed_errors
def media_rules(
    context: AssetCheckExecutionContext, catalog: CatalogResource, state_store: StateStore
) -> Iterator[AssetCheckResult]:
    name = context.partition_key
    conn = catalog.connection(name)
    profile = get_profile(conn.profile)
    with state_store.scratch_dir(name, "rules") as scratch:
        violations = str(scratch / "violations.parquet")
        if not state_store.fetch(SnapshotKeys(name).violations, Path(violations)):
            raise Failure(f"connection '{name}': no violations in the state store; materialize media_probes first")
        con = duckdb.connect()
        counts = dict(
            con.execute("SELECT rule, count(*) FROM read_parquet($p) GROUP BY rule", {"p": violations}).fetchall()
        )
        examples_by_rule = {
            rule: con.execute(
                "SELECT key, message, remediation FROM read_parquet($p) WHERE rule = $r ORDER BY key LIMIT $n",
                {"p": violations, "r": rule, "n": EXAMPLES},
            ).fetchall()
            for rule in ALL_RULES
        }
        con.close()
    for rule in ALL_RULES:
        in_profile = rule in profile.rules
        count = int(counts.get(rule, 0)) if in_profile else 0
        examples = examples_by_rule[rule]
        yield AssetCheckResult(
            asset_key=media_probes.key,
            check_name=rule,
            passed=count == 0,
            severity=AssetCheckSeverity.WARN,
            description=(f"{count} object(s) break rule '{rule}'" if count else f"no object breaks rule '{rule}'")
            + ("" if in_profile else f" (rule not in profile '{conn.profile}')"),
            metadata={
                "count": MetadataValue.int(count),
                "profile": MetadataValue.text(conn.profile),
                "in_profile": MetadataValue.bool(in_profile),
                "examples": table(EXAMPLE_COLUMNS, examples),
            },
        )
