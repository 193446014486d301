"""Secrets come from environment variables named in the catalog, and never leave the process in any text we write.

Every secret value that a provider resolves is remembered here, so that any text leaving our code (an error, a log
line, run metadata, a connection-test detail) can be passed through `scrub` on its way out. Provider errors are the
usual leak: SDKs echo request URLs, and a SAS token or a presigned signature travels in the query string.
"""

from __future__ import annotations

import os
import re
import threading

_lock = threading.Lock()
_known: set[str] = set()

# Credentials that can appear in URLs or connection strings even when we never resolved them ourselves. Each pattern
# matches only where a value sits (a URL's query string, a connection string's `Key=Value;` list, a URL's user-info),
# never in our own sentences: a remedy saying "a SAS with Read and List (sp=rl)" must survive intact.
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

#: Environment variable names: what the catalog must hold in place of a secret.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class MissingSecret(Exception):
    """An environment variable named by the catalog is not set."""


def remember(value: str) -> None:
    """Register a secret so `scrub` removes it from any text. Short values are skipped: they would mangle prose."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)


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


def has_url_userinfo(text: str) -> bool:
    """Whether `text` holds a URL with user-info (`scheme://user:password@host`): a credential, wherever it sits."""
    return _URL_USERINFO.search(text) is not None


def scrub(text: str) -> str:
    """Remove every known secret and every credential-shaped value (URL query parameter, connection-string setting,
    URL user-info) from `text`, leaving the words around them."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, "***")
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}***@", text)
    for pattern in (_QUERY_PARAM, _CONNECTION_STRING_PARAM):
        text = pattern.sub(lambda m: f"{m.group(1)}***", text)
    return text
