"""The rule checks on `media_probes`: one asset check per rule, evaluated together in one step.

They share one step because they share one write: the index's `violations` rows for this connection are swapped for
every rule in a single transaction, so a reader never sees one rule's new rows beside another rule's old ones.
"""

from collections.abc import Iterator

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from assets.partitions import connections_partitions
from assets.probes import media_probes
from media.rules import ALL_RULES, get_profile
from resources.catalog import CatalogResource
from resources.index import MediaIndex
from resources.secrets import scrubbed_errors
from resources.storage import SyncHome

EXAMPLES = 5

RULE_DESCRIPTIONS = {
    "readable": "Every object can be parsed from its header; truncated, fake and corrupt files are listed.",
    "supported_format": "Every object is an image or video format the connection's profile accepts.",
    "exif_orientation": "Images carry no EXIF orientation or orientation 1 (Datature Vi rejects the rest).",
    "mp4_brand": "MP4 videos have major brand mp42.",
    "mp4_pixel_format": "Videos use pixel format yuv420p.",
}


def _examples_table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| key | problem | fix |", "|---|---|---|"]
    lines += [f"| `{k}` | {m} | `{r}` |" for k, m, r in rows]
    return "\n".join(lines)


@multi_asset_check(
    name="media_rules",
    specs=[
        AssetCheckSpec(
            rule, asset=media_probes, description=RULE_DESCRIPTIONS[rule], partitions_def=connections_partitions
        )
        for rule in ALL_RULES
    ],
    pool="duckdb_index",
    can_subset=False,
)
@scrubbed_errors
def media_rules(
    context: AssetCheckExecutionContext, catalog: CatalogResource, home: SyncHome, index: MediaIndex
) -> Iterator[AssetCheckResult]:
    name = context.partition_key
    conn = catalog.connection(name)
    profile = get_profile(conn.profile)
    violations = home.snapshot(name, "violations")
    counts = index.replace_violations(name, profile.rules, violations)
    con = duckdb.connect()
    for rule in ALL_RULES:
        in_profile = rule in profile.rules
        count = counts.get(rule, 0)
        examples = con.execute(
            f"SELECT key, message, remediation FROM read_parquet('{violations}') WHERE rule = $r "
            f"ORDER BY key LIMIT {EXAMPLES}",
            {"r": rule},
        ).fetchall()
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
                "examples": MetadataValue.md(_examples_table(examples)),
            },
        )
    con.close()
