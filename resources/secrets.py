"""Secrets come from environment variables named in the catalog, and never leave the process in any text we write.

Every secret value that a provider resolves is remembered here, so that any text leaving our code (an error, a log
line, run metadata, a connection-test detail) can be passed through `scrub` on its way out. Provider errors are the
usual leak: SDKs echo request URLs, and a SAS token or a presigned signature travels in the query string.
"""

from __future__ import annotations

import json
import os
import re
import threading

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
