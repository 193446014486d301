"""A live bucket connection for a catalog entry, and its connection test.

There is no dispatch here: `Connection.provider_settings()` is the catalog's discriminated union on `provider`,
and the settings model it picks opens its own bucket class, importing that provider's SDK only then.
"""

from __future__ import annotations

from media.cors import CorsStatus, CorsVerdict, verdict_for
from resources.bucket import (
    Bucket,
    BucketError,
    ConnectionMisconfigured,
    ConnectionStatus,
    ConnectionTest,
    CorsUnreadable,
)
from resources.catalog import Connection, validate_provider_settings
from resources.secrets import scrub

__all__ = [
    "cors_audit",
    "cors_summary",
    "open_bucket",
    "probe_concurrency",
    "test_connection",
    "validate_provider_settings",
]


def open_bucket(conn: Connection) -> Bucket:
    """A live connection for a catalog entry. Secrets are resolved here, from the environment, at the last
    moment."""
    return conn.provider_settings().open(conn)


def probe_concurrency(conn: Connection) -> int:
    return conn.provider_settings().options.concurrency


def test_connection(conn: Connection) -> ConnectionTest:
    """One status for a connection, whatever fails: an unset variable is MISCONFIGURED, not a traceback."""
    try:
        bucket = open_bucket(conn)
    except ConnectionMisconfigured as exc:
        return ConnectionTest(
            conn.name,
            conn.provider,
            ConnectionStatus.MISCONFIGURED,
            scrub(str(exc)),
            "set the variable named in the message (or fix the field it names), then test again",
        )
    outcome = bucket.test()
    return ConnectionTest(outcome.connection, outcome.provider, outcome.status, scrub(outcome.detail), outcome.remedy)


def cors_audit(conn: Connection, bucket: Bucket | None = None) -> CorsVerdict | None:
    """Whether the bucket's CORS rules let `conn.cors_origin` load its media; None when no origin is named.

    A bucket read with credentials is private (an anonymous connection reads a public one), which decides whether a
    `*` origin is too broad. Credentials that may not read the CORS configuration give UNREADABLE with the
    permission to add, not an error: a sync does not need that permission.
    """
    origin = conn.cors_origin
    if origin is None:
        return None
    bucket = bucket or open_bucket(conn)
    try:
        rules = bucket.cors_rules()
    except CorsUnreadable as exc:
        return CorsVerdict(origin, CorsStatus.UNREADABLE, scrub(str(exc)))
    if rules is None:
        return CorsVerdict(
            origin, CorsStatus.NOT_APPLICABLE, f"not applicable: the {conn.provider} provider has no CORS"
        )
    private = conn.auth.get("mode") != "anonymous"
    account = str(conn.options.get("account", ""))
    verdict = verdict_for(conn.provider, conn.bucket or "", origin, rules, private=private, account=account)
    return CorsVerdict(verdict.origin, verdict.status, scrub(verdict.reason), scrub(verdict.fix), verdict.rules)


def cors_summary(conn: Connection) -> dict[str, str] | None:
    """The CORS verdict as `bucket-sync test` shows it (status, origin, reason, fix), or None without cors_origin.

    A failure to read the rules (an outage) is shown as status UNCHECKED rather than raised: CORS never decides
    whether the connection works.
    """
    if conn.cors_origin is None:
        return None
    try:
        verdict = cors_audit(conn)
    except BucketError as exc:
        return {"status": "UNCHECKED", "origin": conn.cors_origin, "reason": scrub(str(exc)), "fix": ""}
    assert verdict is not None
    return {"status": verdict.status.value, "origin": verdict.origin, "reason": verdict.reason, "fix": verdict.fix}
