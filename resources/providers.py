"""Which resource serves which provider: the one place mapping a catalog entry to a live bucket connection."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from resources.azure_bucket import AzureBucket, AzureSettings, validate_azure
from resources.bucket import Bucket, ConnectionMisconfigured, ConnectionStatus, ConnectionTest
from resources.catalog import Connection
from resources.gcs_bucket import GCSBucket, GCSSettings, validate_gcs
from resources.local_bucket import LocalBucket, LocalSettings
from resources.s3_bucket import S3Bucket, S3Settings, validate_s3
from resources.secrets import scrub


def validate_provider_settings(conn: Connection) -> str | None:
    """The first problem with `conn`'s provider fields, phrased as "field 'x': what to do", or None."""
    if conn.provider == "local":
        if not conn.root:
            return "field 'root': a local connection needs `root`, the folder that acts as the bucket"
        model: type = LocalSettings
        names_problem = None
    elif conn.provider == "s3":
        model, names_problem = S3Settings, validate_s3(conn)
    elif conn.provider == "gcs":
        model, names_problem = GCSSettings, validate_gcs(conn)
    elif conn.provider == "azure":
        model, names_problem = AzureSettings, validate_azure(conn)
    else:
        return f"field 'provider': provider '{conn.provider}' is not available in this build"
    try:
        model.model_validate({"options": conn.options, "auth": conn.auth})
    except ValidationError as exc:
        err = exc.errors()[0]
        parts = [str(p) for p in err["loc"] if not str(p).startswith(("S3", "Local", "GCS", "Azure"))]
        if parts[:1] == ["auth"] and len(parts) > 2 and parts[1] == conn.auth.get("mode"):
            del parts[1]  # the discriminated union's tag: 'auth.sas.sas_token_env' reads as 'auth.sas_token_env'
        loc = ".".join(parts)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        elif err["type"] == "union_tag_not_found":
            loc, msg = "auth.mode", "missing; say which auth mode this connection uses"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown auth mode {err.get('input')!r}; {msg.split('expected one of')[-1].strip()}"
            msg = f"unknown auth mode; use one of {err['ctx'].get('expected_tags')}"
        return f"field '{loc}': {msg}"
    return names_problem


def open_bucket(conn: Connection) -> Bucket:
    """A live connection for a catalog entry. Secrets are resolved here, from the environment, at the last
    moment."""
    if conn.provider == "local":
        root = Path(conn.root or ".")
        if not root.is_absolute():
            root = Path(conn.base_dir) / root
        return LocalBucket(connection=conn.name, root=str(root))
    if conn.provider == "s3":
        return S3Bucket.from_connection(conn)
    if conn.provider == "gcs":
        return GCSBucket.from_connection(conn)
    if conn.provider == "azure":
        return AzureBucket.from_connection(conn)
    raise ValueError(f"connection '{conn.name}': provider '{conn.provider}' is not available in this build")


def probe_concurrency(conn: Connection) -> int:
    return int(conn.options.get("concurrency", 8 if conn.provider == "local" else 32))


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
