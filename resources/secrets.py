"""Secrets come from environment variables named in the catalog, and never leave the process in any text we write.

Every secret value that a provider resolves is remembered here, so that any text leaving our code (an error, a log
line, run metadata, a connection-test detail) can be passed through `scrub` on its way out. Provider errors are the
usual leak: SDKs echo request URLs, and a SAS token or a presigned signature travels in the query string.
`scrubbed_errors` is the net behind every other measure: whatever a Dagster compute function raises reaches Dagster's
run records only as scrubbed text.

Dagster is imported only where an error is being replaced: the catalog, the index reader and the CLI scrub text too,
and `bucket-sync --help`, `status` and `query` must answer without paying for Dagster's import.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dagster import Failure

_lock = threading.Lock()
_known: set[str] = set()

# Credentials that can appear in URLs or connection strings even when we never resolved them ourselves. Each pattern
# matches only where a value sits (a URL's query string, a connection string's `Key=Value;` list, a URL's user-info,
# a PEM private key), never in our own sentences: a remedy saying "a SAS with Read and List (sp=rl)" must survive.
#: A query parameter: after `?` or `&`, also HTML-escaped (`&amp;`) or percent-encoded (`%3F`, `%26`) as URLs
#: appear inside XML error bodies and inside other URLs.
_QUERY_PARAM = re.compile(
    r"(?i)((?:[?&]|&amp;|%3F|%26)(?:sig|signature|x-amz-signature|x-amz-security-token|x-amz-credential|se|sp|sv"
    r"|skoid|sktid|password|client_secret|access_token)(?:=|%3D))([^&\s\"'<>#]+)"
)
#: A connection-string setting: at the start of the text or of a line, or after `;`.
_CONNECTION_STRING_PARAM = re.compile(
    r"(?im)((?:^|;)\s*(?:AccountKey|SharedAccessSignature|password|client_secret)=)([^;\s\"']+)"
)
#: A URL's user-info (`scheme://user:password@host`): everything between `//` and the last `@` of the authority.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s\"'<>]*@")

#: A PEM private key, whole or cut short, with real line breaks or with `\n` escapes (JSON, a Python repr).
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----(?:[A-Za-z0-9+/=\s]|\\+[nr])*(?:-----END \1-----)?"
)

#: The packages whose errors are written for people (cause and fix): their text leads a step's failure as it is.
OWN_PACKAGES = frozenset({"assets", "checks", "media", "pipelines", "resources"})

#: Environment variable names: what the catalog must hold in place of a secret.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class SecretError(Exception):
    """A secret named by the catalog cannot be used. The message names the variable and the field, never the value."""


class MissingSecret(SecretError):
    """An environment variable named by the catalog is not set."""


class SecretNotAPath(SecretError):
    """A variable that should hold a path holds what looks like the key itself (a common slip: `export K="$(cat
    key.json)"`). Using it as a path would put the key in an OSError, and from there in every log and run record."""


def _variants(value: str) -> set[str]:
    """The forms in which `value` reaches text: as is, stripped, and escaped by `repr` (an OSError's file name) or
    by JSON (Dagster's event records), where line breaks and quotes no longer match the raw value."""
    forms = {value, value.strip(), repr(value)[1:-1], json.dumps(value)[1:-1]}
    return {form for form in forms if len(form) >= 6}


def remember(value: str) -> None:
    """Register a secret so `scrub` removes it from any text. Short values are skipped: they would mangle prose."""
    if value and len(value) >= 6:
        with _lock:
            _known.update(_variants(value))


def remember_key_material(text: str) -> None:
    """Register the private parts of a key (service-account JSON or PEM), each PEM line on its own too: an SDK
    error may quote one line of the body, or a JSON-escaped run of it."""
    pems: list[str] = []
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if isinstance(info, dict):
        for field in ("private_key", "private_key_id", "client_secret", "refresh_token"):
            if isinstance(info.get(field), str):
                remember(info[field])
                pems.append(info[field])
    elif "-----BEGIN" in text:
        remember(text)
        pems.append(text)
    for pem in pems:
        for line in pem.splitlines():
            if not line.startswith("-----"):
                remember(line.strip())


def resolve_env(var: str, *, connection: str, field: str) -> str:
    """Read the secret that environment variable `var` holds, for `connection`'s `field`."""
    value = os.environ.get(var)
    if value is None or value == "":
        raise MissingSecret(
            f"connection '{connection}': environment variable {var} (named by {field}) is not set; "
            f"export {var} with the credential before syncing"
        )
    remember(value)
    return value


#: No file path is this long, or holds these: what a key's content looks like when it is given as a path.
_MAX_PATH = 4096
_KEY_CONTENT = re.compile(r"-----BEGIN |\"private_key|\"type\"\s*:|[\r\n]")


def looks_like_key_content(value: str) -> bool:
    """Whether `value`, meant as a path, is rather a key's content: JSON, PEM, several lines, or longer than a
    path can be."""
    stripped = value.strip()
    return stripped.startswith(("{", "[")) or len(value) > _MAX_PATH or bool(_KEY_CONTENT.search(value))


def refuse_key_content(var: str, value: str, *, connection: str, field: str) -> None:
    """Raise SecretNotAPath if `value`, which variable `var` holds as a path, is rather a key's content.

    The content is remembered before refusing, so no later echo of it (a retry, an SDK reading the same variable)
    can leak it either; the refusal names the variable and the field, never the value.
    """
    if looks_like_key_content(value):
        remember(value)
        remember_key_material(value)
        raise SecretNotAPath(
            f"connection '{connection}': the variable {var} (read for {field}) holds what looks like key content, "
            f"not a path; save the key to a file and set {var} to that file's path"
        )


def resolve_env_path(var: str, *, connection: str, field: str) -> str:
    """The path that environment variable `var` holds, refusing key content given in its place."""
    value = resolve_env(var, connection=connection, field=field)
    refuse_key_content(var, value, connection=connection, field=field)
    return value


def check_sdk_path_variables(names: tuple[str, ...], *, connection: str, field: str) -> None:
    """Refuse key content in the path variables a provider SDK reads on its own (GOOGLE_APPLICATION_CREDENTIALS,
    AWS_CONFIG_FILE, ...): the SDK would quote the content back in its "file not found" error."""
    for var in names:
        value = os.environ.get(var)
        if value:
            refuse_key_content(var, value, connection=connection, field=field)


def has_url_userinfo(text: str) -> bool:
    """Whether `text` holds a URL with user-info (`scheme://user:password@host`): a credential, wherever it sits."""
    return _URL_USERINFO.search(text) is not None


def scrub(text: str) -> str:
    """Remove every known secret and every credential-shaped value (URL query parameter, connection-string setting,
    URL user-info, PEM private key) from `text`, leaving the words around them."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, "***")
    text = _PEM_PRIVATE_KEY.sub("***", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}***@", text)
    for pattern in (_QUERY_PARAM, _CONNECTION_STRING_PARAM):
        text = pattern.sub(lambda m: f"{m.group(1)}***", text)
    return text


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _scrub_json(data: Any) -> Any:
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {scrub(str(k)): _scrub_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_scrub_json(v) for v in data]
    return data


def _scrub_metadata_value(value: Any) -> Any:
    """The same metadata value with its text scrubbed (text, markdown, URL, path, JSON); numbers pass as they are."""
    from dagster import (
        JsonMetadataValue,
        MarkdownMetadataValue,
        MetadataValue,
        PathMetadataValue,
        TextMetadataValue,
        UrlMetadataValue,
    )

    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, TextMetadataValue):
        return MetadataValue.text(scrub(value.text))
    if isinstance(value, MarkdownMetadataValue):
        return MetadataValue.md(scrub(value.md_str or ""))
    if isinstance(value, UrlMetadataValue):
        return MetadataValue.url(scrub(value.url))
    if isinstance(value, PathMetadataValue):
        return MetadataValue.path(scrub(str(value.fspath)))
    if isinstance(value, JsonMetadataValue):
        return MetadataValue.json(_scrub_json(value.data))
    return value


def _scrubbed_failure(exc: BaseException) -> Failure:
    """A Failure that says what `exc` said, scrubbed, and carries nothing of it: no cause, no context, no object.

    A Failure's description and metadata are scrubbed too, and its retry choice kept. For any other exception the
    description is its class name and scrubbed text, and the stack of the original (file, line, code; no message)
    travels as metadata, so the failure can still be located.
    """
    from dagster import Failure, MetadataValue

    if isinstance(exc, Failure):
        return Failure(
            description=scrub(exc.description or ""),
            metadata={k: _scrub_metadata_value(v) for k, v in exc.metadata.items()},
            allow_retries=exc.allow_retries,
        )
    text = " ".join(scrub(str(exc)).split())  # one line: the UI and the CLI's last line show the same sentence
    stack = scrub("".join(traceback.format_tb(exc.__traceback__)))
    # Our own errors are written as a sentence of cause and fix, which should lead; a library's error (OSError,
    # KeyError) says little without its class name.
    ours = type(exc).__module__.split(".")[0] in OWN_PACKAGES
    return Failure(
        description=text if ours and text else f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
        metadata={"error_class": MetadataValue.text(type(exc).__name__), "stack": MetadataValue.text(stack)},
    )


def _replacement(exc: Exception) -> Exception:
    """What to raise in place of `exc`: a RetryRequested stays one (with a scrubbed stand-in for its cause, which
    Dagster serializes), anything else becomes a scrubbed Failure."""
    from dagster import RetryRequested

    if isinstance(exc, RetryRequested):
        retry = RetryRequested(max_retries=exc.max_retries, seconds_to_wait=exc.seconds_to_wait)
        retry.__cause__ = _scrubbed_failure(exc.__cause__) if exc.__cause__ is not None else None
        return retry
    return _scrubbed_failure(exc)


def scrubbed_errors(fn: _Fn) -> _Fn:
    """Wrap a Dagster compute function (under `@asset`, `@asset_check`, `@op`...) so that no exception it raises
    reaches Dagster's run records, compute logs or the terminal with a secret in it.

    Dagster serializes a step's error with its whole `__cause__`/`__context__` chain, so scrubbing the message is not
    enough: the replacement is raised outside the `except` block and `from None`, so it has no context and no cause
    to carry the original text. Only `Exception` is caught: KeyboardInterrupt and DagsterExecutionInterruptedError
    (BaseException) pass untouched, so a run can still be stopped. The signature and type hints stay visible to
    Dagster through `functools.wraps`; a generator function (a multi-asset check yielding results) stays one.
    """
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"scrubbed_errors does not wrap async functions ({fn.__qualname__}); none needs it yet")

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
                return
            except Exception as exc:
                replacement = _replacement(exc)
            raise replacement from replacement.__cause__

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            replacement = _replacement(exc)
        raise replacement from replacement.__cause__

    return function  # type: ignore[return-value]
