"""One asset check per rule on `media_probes`, each owning its rule's rows in the index's `violations` table.

The five checks differ only in the rule they report, so one factory builds them all.
"""

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from assets.partitions import connections_partitions
from assets.probes import media_probes
from media.rules import ALL_RULES, get_profile
from resources.catalog import CatalogResource
from resources.index import MediaIndex
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


def build_rule_check(rule: str) -> AssetChecksDefinition:
    @asset_check(
        asset=media_probes,
        name=rule,
        description=RULE_DESCRIPTIONS[rule],
        partitions_def=connections_partitions,
        pool="duckdb_index",
        blocking=False,
    )
    def _check(
        context: AssetCheckExecutionContext, catalog: CatalogResource, home: SyncHome, index: MediaIndex
    ) -> AssetCheckResult:
        name = context.partition_key
        conn = catalog.connection(name)
        in_profile = rule in get_profile(conn.profile).rules
        violations = home.snapshot(name, "violations")
        count = index.replace_violations(name, rule, violations if in_profile else None)
        examples: list[tuple[str, str, str]] = []
        if count:
            con = duckdb.connect()
            examples = con.execute(
                f"SELECT key, message, remediation FROM read_parquet('{violations}') WHERE rule = $r "
                f"ORDER BY key LIMIT {EXAMPLES}",
                {"r": rule},
            ).fetchall()
            con.close()
        return AssetCheckResult(
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

    return _check


rule_checks = [build_rule_check(rule) for rule in ALL_RULES]
