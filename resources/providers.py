"""A live bucket connection for a catalog entry, and its connection test.

There is no dispatch here: `Connection.provider_settings()` is the catalog's discriminated union on `provider`,
and the settings model it picks opens its own bucket class, importing that provider's SDK only then.
"""

from __future__ import annotations

from resources.bucket import Bucket, ConnectionMisconfigured, ConnectionStatus, ConnectionTest
from resources.catalog import Connection, validate_provider_settings
from resources.secrets import scrub

__all__ = ["open_bucket", "probe_concurrency", "test_connection", "validate_provider_settings"]


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
