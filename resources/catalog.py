"""The connection catalog: `connections.yaml`, validated before anything touches a bucket.

Every error names the file, the connection (with its line) and the field, and says how to fix it, because the person
reading it is editing YAML by hand, often under pressure, and a pydantic traceback helps nobody.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from media.cors import normalise_origin, origin_problem
from resources.catalog_yaml import CatalogError, default_catalog_path, read_document, strip_lines
from resources.catalog_yaml import dump_catalog as dump_catalog  # where tests and benchmarks write catalogs from
from resources.secrets import ENV_NAME, has_url_userinfo
from resources.settings import PROVIDER_SETTINGS, ProviderSettings

if TYPE_CHECKING:
    from pydantic import ValidationInfo

CONNECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PROVIDERS = ("local", "s3", "gcs", "azure")
PROFILES = ("strict", "cvat")

# Shapes that are credentials, not environment variable names: AWS key ids, long base64/hex runs, connection strings.
_INLINE_SECRET = re.compile(
    r"^(AKIA|ASIA)[0-9A-Z]{12,}$|^[A-Za-z0-9+/=_\-]{32,}$|AccountKey=|SharedAccessSignature=|[?&]sig=|-----BEGIN"
)


# Identifiers that are long but public (Azure tenant and client ids): never mistaken for a secret.
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


#: Parses max_bytes ("500MB", "2GiB" or a plain number of bytes) with pydantic's own units.
_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)

NOTIFY_EVENTS = ("failure", "blocked", "new_violations")


class Notify(BaseModel):
    """Where and when to tell a person about a sync: a webhook whose URL is in an environment variable.

    The catalog holds the variable's name, never the URL: chat and incident webhooks carry their token in the URL.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_env: str = Field(description="name of the environment variable that holds the webhook URL")
    on: tuple[Literal["failure", "blocked", "new_violations"], ...] = NOTIFY_EVENTS

    @field_validator("webhook_env")
    @classmethod
    def _webhook_env(cls, v: str) -> str:
        if not ENV_NAME.match(v) or _INLINE_SECRET.search(v):
            raise ValueError(
                "give the name of the environment variable that holds the webhook URL "
                "(e.g. webhook_env: BUCKET_SYNC_WEBHOOK_URL), never the URL itself: it may carry a token"
            )
        return v


#: The most messages the event sensor takes from one queue per tick: one evaluation must stay well inside Dagster's
#: sensor timeout (60 s), and the tick's acknowledgement tokens travel in the sensor's cursor.
MAX_EVENT_MESSAGES = 10_000
_PUBSUB_SUBSCRIPTION = re.compile(r"^projects/[a-z0-9][a-z0-9.:-]{0,62}/subscriptions/[A-Za-z][\w.~+%-]{2,254}$")
_SQS_QUEUE_URL = re.compile(r"^https?://[^/\s]+/\d{12}/[A-Za-z0-9_-]{1,75}(\.fifo)?$")
_AZURE_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
#: What `events.queue` holds, per provider, in the words an error shows.
QUEUE_KINDS = {
    "s3": "the SQS queue URL, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/bucket-events",
    "gcs": "the Pub/Sub subscription path, e.g. projects/my-project/subscriptions/bucket-events",
    "azure": "the Storage Queue name (3-63 lowercase letters, digits and single '-'), e.g. bucket-events",
}


class EventQueue(BaseModel):
    """Where a connection's bucket events arrive: S3 notifications in SQS, GCS notifications in a Pub/Sub
    subscription, Azure Event Grid blob events in a Storage Queue. The `bucket_events` sensor drains it and requests
    delta syncs of just the keys named; the connection's scheduled full sync still reconciles events that were lost.

    The queue is read with the bucket's own credentials unless `auth` names others (same modes, same rule: secrets
    only by environment variable name), so one least-privilege identity can read the queue and another the bucket.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = Field(description="SQS queue URL (s3), Pub/Sub subscription path (gcs), Storage Queue name (azure)")
    max_messages: int = Field(
        1000, ge=1, le=MAX_EVENT_MESSAGES, description="most messages taken per sensor tick; the rest wait a tick"
    )
    endpoint: str | None = Field(
        None,
        description=(
            "queue service endpoint override (moto, Azurite, a private endpoint); default: the queue URL's own host "
            "for s3, the account's queue endpoint for azure (its blob endpoint with .blob. read as .queue.), "
            "Google's for gcs"
        ),
    )
    auth: dict[str, Any] | None = Field(None, description="credentials for the queue; default the connection's auth")


class Connection(BaseModel):
    """One bucket connection. Provider-specific `options` and `auth` are validated by the provider's own model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    provider: Literal["local", "s3", "gcs", "azure"]
    bucket: str | None = Field(None, description="S3/GCS bucket or Azure container")
    root: str | None = Field(None, description="local provider: the folder that acts as the bucket")
    prefix: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    profile: Literal["strict", "cvat"] = "strict"
    options: dict[str, Any] = Field(default_factory=dict)
    auth: dict[str, Any] = Field(default_factory=dict)
    watch: bool = False
    publish_manifest: bool = Field(
        False,
        description=(
            "write the CVAT manifests back into the bucket under the prefix, where CVAT looks for them: the one "
            "write bucket-sync ever makes, so it needs write permission on those keys and is off unless asked for"
        ),
    )
    cors_origin: str | None = Field(
        None,
        description=(
            "the web origin that loads this connection's media in a browser (e.g. https://app.cvat.ai): the "
            "cors_audit check and `bucket-sync test` say whether the bucket's CORS rules let it, and how to fix them"
        ),
    )
    max_objects: int | None = Field(
        None,
        description=(
            "index at most this many objects; the rest are listed, recorded as skipped for quota in the index and "
            "reported by the `quota` check, never probed. Objects already indexed always keep their place"
        ),
    )
    max_bytes: ByteSize | None = Field(
        None,
        description=(
            "index objects while their total size stays within this (bytes, or '500MB', '2GiB'); as max_objects"
        ),
    )
    schedule: str | None = None
    notify: Notify | None = Field(None, description="webhook for this connection; default the catalog's `notify`")
    events: EventQueue | None = Field(None, description="bucket event queue driving delta syncs (sensor bucket_events)")
    description: str = ""
    #: Folder of the catalog file: relative local roots and key files resolve against it, not the working directory.
    base_dir: str = Field(".", exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not CONNECTION_NAME.match(v):
            raise ValueError(
                f"'{v}' is not a valid connection name: use 1 to 63 lowercase letters, digits and '-', "
                "starting with a letter or digit (it becomes a Dagster partition key)"
            )
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v.startswith("/"):
            raise ValueError(
                f"prefix '{v}' starts with '/': bucket keys have no leading slash; write '{v.lstrip('/')}'"
            )
        if "//" in v or any(part in (".", "..") for part in v.split("/")):
            raise ValueError(f"prefix '{v}' has an empty, '.' or '..' segment; write the folder path plainly")
        # A prefix names a folder: 'cats' must not also match 'catsanddogs/'.
        return v if not v or v.endswith("/") else v + "/"

    @field_validator("cors_origin")
    @classmethod
    def _cors_origin(cls, v: str | None) -> str | None:
        if v is None:
            return v
        problem = origin_problem(v)
        if problem:
            raise ValueError(problem)
        return normalise_origin(v)

    @field_validator("max_objects", "max_bytes", mode="before")
    @classmethod
    def _quota(cls, v: Any, info: ValidationInfo) -> Any:
        """A quota is a positive whole number (max_bytes may carry a unit); anything else would silently mean
        "index nothing" or "no limit", so it is refused with what to write instead."""
        unit = " of bytes, or a size such as '500MB' or '2GiB'" if info.field_name == "max_bytes" else " of objects"
        fix = f"write a positive whole number{unit}, or remove the field for no limit"
        if v is None:
            return v
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError(f"{v!r} is not a count; {fix}")
        if isinstance(v, int | float) and v <= 0:
            raise ValueError(f"{v!r} is not positive: a quota of 0 would index nothing; {fix}")
        if isinstance(v, str) and info.field_name == "max_objects":
            raise ValueError(f"{v!r} is not a whole number; {fix}")
        if isinstance(v, str):
            try:
                size = _BYTE_SIZE.validate_python(v)
            except ValidationError:
                raise ValueError(f"{v!r} is not a size; {fix}") from None
            if size <= 0:
                raise ValueError(f"{v!r} is not positive: a quota of 0 would index nothing; {fix}")
        return int(v) if isinstance(v, float) else v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is None:
            return v
        # The cron check is Dagster's own (what a ScheduleDefinition accepts), so Dagster is imported here, and only
        # for a catalog that has a schedule.
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(v):
            raise ValueError(f"schedule '{v}' is not a cron expression such as \"0 2 * * *\"")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: EventQueue | None, info: ValidationInfo) -> EventQueue | None:
        """The queue must be of the kind the provider's notifications go to; a local folder sends none."""
        provider = info.data.get("provider")
        if v is None or provider is None:
            return v
        if provider == "local":
            raise ValueError(
                "a local folder sends no bucket events; remove `events` (use `watch: true` to poll the folder)"
            )
        pattern = {"s3": _SQS_QUEUE_URL, "gcs": _PUBSUB_SUBSCRIPTION, "azure": _AZURE_QUEUE_NAME}[provider]
        if not pattern.match(v.queue):
            raise ValueError(f"events.queue '{v.queue}' is not {QUEUE_KINDS[provider]}")
        return v

    def queue_connection(self) -> Connection:
        """This connection with the queue's credentials (`events.auth`, when given) in place of the bucket's: the
        provider's own resolution of auth (modes, secrets by variable name, assume-role, key files) then builds the
        queue client's credentials, so a queue is authenticated exactly as a bucket would be."""
        if self.events is None or self.events.auth is None:
            return self
        return self.model_copy(update={"auth": self.events.auth})

    def provider_settings(self) -> ProviderSettings:
        """`options`, `auth` and `bucket` or `root`, validated by the model the `provider` tag picks.

        Not cached: a copy with other options (`model_copy(update=...)`) must not answer with the original's.
        """
        fields = ("provider", "bucket", "root", "options", "auth")
        return PROVIDER_SETTINGS.validate_python({field: getattr(self, field) for field in fields})

    @cached_property
    def key_filter(self) -> KeyFilter:
        return KeyFilter(self.include, self.exclude)

    def relative_key(self, key: str) -> str:
        """The key as seen inside the connection: relative to its prefix."""
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key


class KeyFilter:
    """Include/exclude globs over keys relative to the prefix.

    `**` crosses folders, `*` and `?` stay inside one. A pattern without `/` matches the file name at any depth
    (as in .gitignore), so `*.jpg` means every JPEG, wherever it sits.
    """

    def __init__(self, include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
        self._include = [self._compile(p) for p in include]
        self._exclude = [self._compile(p) for p in exclude]

    @staticmethod
    def _compile(pattern: str) -> tuple[bool, re.Pattern[str]]:
        out, i = [], 0
        while i < len(pattern):
            c = pattern[i]
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
                continue
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append({"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)))
            i += 1
        return "/" in pattern, re.compile("".join(out) + r"\Z", re.DOTALL)

    def __call__(self, relative_key: str) -> bool:
        name = PurePosixPath(relative_key).name

        def hit(rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
            return any(rx.match(relative_key if anchored else name) for anchored, rx in rules)

        if self._include and not hit(self._include):
            return False
        return not hit(self._exclude)


_INLINE_SECRET_ADVICE = (
    "looks like an inline secret; put the value in an environment variable "
    "and give the variable's name in a field ending in _env"
)


def _secret_field_problems(section: str, values: dict[str, Any]) -> list[str]:
    """Fields of `auth`/`options` that hold something other than an environment variable name where a secret
    belongs, each as "field 'x': what to do". The value itself is never quoted: it may be the secret."""
    problems = []
    for field, value in values.items():
        if field == "__line__" or not isinstance(value, str):
            continue
        where = f"field '{section}.{field}'"
        if field.endswith("_env"):
            if not value.strip():
                example = field.removesuffix("_env").upper()
                problems.append(
                    f"{where}: the variable name is empty; write the name of the environment variable that "
                    f"holds the credential (e.g. {field}: {example}), or remove the field if it is optional"
                )
            # An AWS key id is also a valid variable name, so the credential shapes are tested here too.
            elif not ENV_NAME.match(value) or _INLINE_SECRET.search(value):
                problems.append(f"{where}: {_INLINE_SECRET_ADVICE}")
        elif _INLINE_SECRET.search(value) and not _GUID.match(value):
            problems.append(f"{where}: {_INLINE_SECRET_ADVICE}")
    return problems


def _event_auth(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's `events.auth` mapping as written, or {} when there is none (or it is not a mapping)."""
    events = entry.get("events")
    auth = events.get("auth") if isinstance(events, dict) else None
    return auth if isinstance(auth, dict) else {}


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a catalog entry with its field path (`options.endpoint`, `include[0]`)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "__line__":
                yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _url_credential_problems(entry: dict[str, Any]) -> list[str]:
    """Fields holding a URL with user-info (`http://user:password@host`), anywhere in the entry. Such a URL is an
    inline secret, and every message that names the endpoint would carry it; the URL is not quoted back."""
    return [
        f"field '{field}': the URL holds a user name or password before '@'; that is an inline secret: put the "
        "credential in an environment variable, give the variable's name in a field ending in _env, and write "
        "the URL without it"
        for field, value in _strings(entry, "")
        if has_url_userinfo(value)
    ]


class Catalog(BaseModel):
    """All connections of one catalog file, by name."""

    path: str
    connections: dict[str, Connection]
    #: The catalog-wide default webhook, for connections that name none of their own.
    notify: Notify | None = None

    def notify_for(self, name: str) -> Notify | None:
        """The webhook settings that apply to connection `name`: its own, else the catalog's, else none."""
        conn = self.connections.get(name)
        return (conn.notify if conn else None) or self.notify

    def get(self, name: str) -> Connection:
        try:
            return self.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.connections)) or "none"
            raise CatalogError(
                f"{self.path}: no connection named '{name}' (known: {known}); add it to the catalog, "
                "or check BUCKET_SYNC_CATALOG points at the right file"
            ) from None


def _format_validation_error(where: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(entry)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
            if any(word in field for word in ("secret", "key", "token", "password", "sas")):
                msg += " (secrets are given as environment variable names, e.g. secret_access_key_env: MY_VAR)"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        lines.append(f"{where}, field '{field}': {msg}")
    return "\n".join(lines)


def validate_provider_settings(conn: Connection) -> str | None:
    """The first problem with `conn`'s provider fields, phrased as "field 'x': what to do", or None."""
    try:
        conn.provider_settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        parts = [str(p) for p in err["loc"][1:]]  # [0] is the union's tag: the provider
        if parts[:1] == ["auth"] and len(parts) > 2 and parts[1] == conn.auth.get("mode"):
            del parts[1]  # the auth union's tag: 'auth.sas.sas_token_env' reads as 'auth.sas_token_env'
        loc = ".".join(parts)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        elif err["type"] == "union_tag_not_found":
            loc, msg = "auth.mode", "missing; say which auth mode this connection uses"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown auth mode; use one of {err['ctx'].get('expected_tags')}"
        return f"field '{loc}': {msg}"
    return None


def _event_auth_problem(conn: Connection) -> str | None:
    """The first problem with `events.auth`, located under `events.`, or None (also when it is not given)."""
    if conn.events is None or conn.events.auth is None:
        return None
    problem = validate_provider_settings(conn.queue_connection())
    return problem.replace("field 'auth", "field 'events.auth", 1) if problem else None


def load_catalog(path: str | os.PathLike[str]) -> Catalog:
    """Read and validate a catalog file. Raises CatalogError with every problem found, each located."""
    file = Path(path)
    raw = read_document(file)
    entries = list(raw["connections"])
    default_notify: Notify | None = None
    if raw.get("notify") is not None:
        try:
            default_notify = Notify.model_validate(strip_lines(raw["notify"]))
        except ValidationError as exc:
            raise CatalogError(_format_validation_error(f"{file}: top-level 'notify'", exc)) from None

    problems: list[str] = []
    connections: dict[str, Connection] = {}
    first_line: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"{file}: connections[{index}] is not a mapping of fields")
            continue
        line = entry.get("__line__", "?")
        name = entry.get("name")
        where = f"{file}:{line}: connection '{name}'" if name else f"{file}:{line}: connections[{index}]"
        secrets = (
            _secret_field_problems("auth", entry.get("auth") or {})
            + _secret_field_problems("options", entry.get("options") or {})
            + _secret_field_problems("events.auth", _event_auth(entry))
            + _url_credential_problems(entry)
        )
        if secrets:
            problems.extend(f"{where}, {problem}" for problem in secrets)
            continue
        try:
            conn = Connection.model_validate({**strip_lines(entry), "base_dir": str(file.parent.resolve())})
        except ValidationError as exc:
            problems.append(_format_validation_error(where, exc))
            continue
        if conn.name in connections:
            problems.append(
                f"{where}: duplicate connection name (first defined at line {first_line[conn.name]}); "
                "connection names must be unique"
            )
            continue
        problem = validate_provider_settings(conn) or _event_auth_problem(conn)
        if problem:
            problems.append(f"{where}, {problem}")
            continue
        connections[conn.name] = conn
        first_line[conn.name] = line
    if problems:
        raise CatalogError("\n".join(problems))
    return Catalog(path=str(file), connections=connections, notify=default_notify)


class CatalogFile(BaseModel):
    """The catalog file a process reads, re-read at every load. `CatalogResource` (resources/catalog_resource.py) is
    this as the code location's Dagster resource; the CLI uses it as it is, without importing Dagster."""

    model_config = ConfigDict(frozen=True)

    path: str | None = Field(None, description="catalog file; default $BUCKET_SYNC_CATALOG or ./connections.yaml")

    @property
    def resolved_path(self) -> str:
        """Resolved at use, not import, so one code location serves whatever the environment points at."""
        return self.path or default_catalog_path()

    def load(self) -> Catalog:
        """Re-read the file: sensors call this every tick, so an edit is picked up without a redeploy."""
        return load_catalog(self.resolved_path)

    def connection(self, name: str) -> Connection:
        return self.load().get(name)
