"""`cors_audit`: whether the web app named by the connection's `cors_origin` may load the bucket's media.

A bucket that syncs fine can still show nothing in CVAT or any browser-based tool: the browser needs a CORS rule for
the app's origin. The sync does not depend on it, so this check only warns; it never blocks and never fails the run,
even when the CORS configuration cannot be read (then it names the permission to add). The verdict and the fix go
into the check's metadata, where a person finds them next to the listing.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from assets.listing import object_listing
from assets.partitions import connections_partitions
from assets.typed_metadata import table
from resources.bucket import BucketError
from resources.catalog_resource import CatalogResource
from resources.providers import cors_audit as audit
from resources.secrets import scrub, scrubbed_errors


@asset_check(
    asset=object_listing,
    name="cors_audit",
    description=(
        "Warns when the bucket's CORS rules do not let the connection's cors_origin (the web app that loads its "
        "media) GET and HEAD with a Range header, or allow every origin on a private bucket; gives the fix."
    ),
    partitions_def=connections_partitions,
    blocking=False,
)
@scrubbed_errors
def cors_audit(context: AssetCheckExecutionContext, catalog: CatalogResource) -> AssetCheckResult:
    conn = catalog.connection(context.partition_key)
    if conn.cors_origin is None:
        return AssetCheckResult(
            passed=True,
            severity=AssetCheckSeverity.WARN,
            description="no cors_origin set for this connection: nothing to audit",
            metadata={"verdict": MetadataValue.text("NOT_SET")},
        )
    try:
        verdict = audit(conn)
    except BucketError as exc:  # an outage or a misconfiguration: the listing reports those; this only warns
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"could not audit CORS for {conn.cors_origin}: {scrub(str(exc))}",
            metadata={"verdict": MetadataValue.text("ERROR"), "origin": MetadataValue.text(conn.cors_origin)},
        )
    assert verdict is not None  # cors_origin is set
    metadata = {
        "verdict": MetadataValue.text(verdict.status.value),
        "origin": MetadataValue.text(verdict.origin),
        "reason": MetadataValue.text(verdict.reason),
        "rules": MetadataValue.int(len(verdict.rules)),
        "cors_rules": table(
            [("origins", "string", ""), ("methods", "string", ""), ("headers", "string", "")],
            [(" ".join(r.origins), " ".join(r.methods), " ".join(r.headers)) for r in verdict.rules],
        ),
    }
    if verdict.fix:
        metadata["fix"] = MetadataValue.md(f"```\n{verdict.fix}\n```")
    description = f"{verdict.status.value}: {verdict.reason}" + (f". Fix: {verdict.fix}" if verdict.fix else "")
    return AssetCheckResult(
        passed=verdict.ok, severity=AssetCheckSeverity.WARN, description=description, metadata=metadata
    )
