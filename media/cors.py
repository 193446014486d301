"""Whether a bucket's CORS rules let one web origin (the app that loads the media, e.g. CVAT) read it, and the fix.

A web annotation tool loads media straight from the bucket in the browser, so a bucket that lists and reads fine
from Python can still show nothing in the app: the browser refuses the response unless a CORS rule names the app's
origin, allows GET and HEAD, and allows the request headers it sends (`Range`, to seek in a video). This module is
pure: the provider layer turns S3 `GetBucketCors`, the GCS bucket's `cors` field and Azure's service properties into
`CorsRule`s, and this judges them and writes the command that fixes them for that provider.

Case rules: methods and header names are case-insensitive (HTTP says so, and every provider compares them so).
Origins are compared exactly against the lowercase origin a browser sends (scheme and host are serialised in lower
case), as the providers do; a rule origin that differs only in case never matches, and the verdict says so.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from enum import StrEnum

#: What the app needs: reads and size probes.
NEEDED_METHODS = ("GET", "HEAD")
#: Request headers the app sends beyond the CORS-safelisted ones: Range, to seek in a video and read its moov box.
NEEDED_HEADERS = ("Range",)
#: Response headers a video player reads; exposed by the rule the fix writes.
EXPOSED_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges", "ETag")
MAX_AGE_S = 3600

_ORIGIN = re.compile(r"^https?://[a-z0-9.\-\[\]:]+$")


class CorsStatus(StrEnum):
    ALLOWED = "ALLOWED"
    MISSING = "MISSING"
    TOO_NARROW = "TOO_NARROW"
    TOO_BROAD = "TOO_BROAD"
    #: The credentials may not read the CORS configuration; the verdict names the permission to add.
    UNREADABLE = "UNREADABLE"
    #: The provider has no CORS (a local folder).
    NOT_APPLICABLE = "NOT_APPLICABLE"


@dataclass(frozen=True)
class CorsRule:
    """One CORS rule, provider-neutral. Empty `headers` allows no extra request header; `*` allows any."""

    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...] = ()
    exposed: tuple[str, ...] = ()
    max_age_s: int | None = None


@dataclass(frozen=True)
class CorsVerdict:
    """What the judge found for one origin: a status, why, and (unless ALLOWED) the provider's fix."""

    origin: str
    status: CorsStatus
    reason: str
    fix: str = ""
    rules: tuple[CorsRule, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status in (CorsStatus.ALLOWED, CorsStatus.NOT_APPLICABLE)

    def line(self) -> str:
        """One line for a terminal: `CORS https://app.example: TOO_NARROW: ...`."""
        return f"CORS {self.origin}: {self.status.value}: {self.reason}"


def origin_problem(value: str) -> str | None:
    """What is wrong with `value` as a web origin (scheme, host, optional port; no path), or None."""
    text = value.strip()
    if not text.lower().startswith(("http://", "https://")):
        return f"cors_origin '{value}' must start with https:// (or http://), e.g. https://app.cvat.ai"
    rest = text.split("://", 1)[1]
    if not rest or any(c in rest for c in "/?#@"):
        return (
            f"cors_origin '{value}' must be an origin only (scheme, host and optional port), without a path, "
            "query or user name; e.g. https://app.cvat.ai"
        )
    if not _ORIGIN.match(text.lower()):
        return (
            f"cors_origin '{value}' is not a valid origin; write it as the browser shows it, e.g. https://app.cvat.ai"
        )
    return None


def normalise_origin(value: str) -> str:
    """The origin as a browser sends it in the `Origin` header: scheme and host in lower case."""
    return value.strip().lower()


def _pattern_match(pattern: str, value: str, *, ignore_case: bool) -> bool:
    """A provider pattern with `*` wildcards (S3 allows one in an origin, e.g. `https://*.example.com`)."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value) is not None


def origin_matches(pattern: str, origin: str) -> bool:
    """Whether a rule's origin pattern admits `origin`, compared exactly (see the module's case rules)."""
    return pattern.strip() == "*" or _pattern_match(pattern.strip(), origin, ignore_case=False)


def _allows_header(rule: CorsRule, header: str) -> bool:
    return any(_pattern_match(h.strip(), header, ignore_case=True) for h in rule.headers)


def _allows_method(rule: CorsRule, method: str) -> bool:
    return any(m.strip().upper() in (method, "*") for m in rule.methods)


def _shortfall(rule: CorsRule, needed_headers: tuple[str, ...]) -> list[str]:
    """What `rule` does not allow of what the app needs."""
    missing = [m for m in NEEDED_METHODS if not _allows_method(rule, m)]
    missing += [f"header {h}" for h in needed_headers if not _allows_header(rule, h)]
    return missing


def judge_cors(
    rules: list[CorsRule] | tuple[CorsRule, ...],
    origin: str,
    *,
    private: bool,
    needed_headers: tuple[str, ...] = NEEDED_HEADERS,
) -> tuple[CorsStatus, str]:
    """The verdict for `origin` over `rules`: MISSING, TOO_NARROW, TOO_BROAD or ALLOWED, with the reason.

    S3, GCS and Azure answer a request with the first rule that matches its origin, method and requested headers,
    so one complete rule for the origin is enough, wherever it stands; when none is, the first rule for the origin
    that allows GET is the one to widen, and its shortfall is the reason. A broken app is reported before a broad
    rule: it is the more urgent problem. `private`: reading needs credentials, so a `*` origin lets any web page
    that holds a signed URL read it from a browser.
    """
    origin = normalise_origin(origin)
    matching = [r for r in rules if any(origin_matches(o, origin) for o in r.origins)]
    if not matching:
        near = [o for r in rules for o in r.origins if o.strip() != "*" and _pattern_match(o, origin, ignore_case=True)]
        hint = f" (rule origin {near[0]!r} differs only in case; browsers send {origin!r})" if near else ""
        return CorsStatus.MISSING, f"no CORS rule allows the origin {origin}{hint}"
    if not any(not _shortfall(r, needed_headers) for r in matching):
        closest = next((r for r in matching if _allows_method(r, "GET")), matching[0])
        shortfall = _shortfall(closest, needed_headers)
        return (
            CorsStatus.TOO_NARROW,
            f"the rule for {origin} does not allow {', '.join(shortfall)} (needed to load and seek media)",
        )
    broad = [r for r in rules if any(o.strip() == "*" for o in r.origins)]
    if private and broad:
        return (
            CorsStatus.TOO_BROAD,
            "a CORS rule allows every origin (*) on a private bucket: any web page with a signed URL may read it; "
            f"allow only {origin}",
        )
    return CorsStatus.ALLOWED, f"{origin} may GET and HEAD with {', '.join(needed_headers) or 'no extra headers'}"


def recommended_rules(rules: list[CorsRule] | tuple[CorsRule, ...], origin: str) -> list[CorsRule]:
    """The rules the fix writes: one complete rule for `origin` first, then the existing rules but those that allow
    every origin or name only `origin` (a put replaces the whole configuration, so other apps' rules, wildcard
    subdomains included, are kept; the new rule comes first so it is the one that answers for `origin`)."""
    origin = normalise_origin(origin)
    wanted = CorsRule((origin,), NEEDED_METHODS, ("*",), EXPOSED_HEADERS, MAX_AGE_S)
    kept = [
        r for r in rules if not any(o.strip() == "*" for o in r.origins) and {o.strip() for o in r.origins} != {origin}
    ]
    return [wanted, *kept]


def s3_cors_json(rules: list[CorsRule]) -> dict[str, object]:
    """The `--cors-configuration` document of `aws s3api put-bucket-cors`."""
    out = []
    for r in rules:
        rule: dict[str, object] = {"AllowedOrigins": list(r.origins), "AllowedMethods": list(r.methods)}
        if r.headers:
            rule["AllowedHeaders"] = list(r.headers)
        if r.exposed:
            rule["ExposeHeaders"] = list(r.exposed)
        if r.max_age_s is not None:
            rule["MaxAgeSeconds"] = r.max_age_s
        out.append(rule)
    return {"CORSRules": out}


def gcs_cors_json(rules: list[CorsRule]) -> list[dict[str, object]]:
    """The `cors.json` of `gcloud storage buckets update --cors-file`. GCS has one header list (`responseHeader`),
    which it uses both for the preflight's allowed request headers and the exposed response headers."""
    out = []
    for r in rules:
        headers = list(dict.fromkeys([*NEEDED_HEADERS, *r.exposed] if "*" in r.headers else [*r.headers, *r.exposed]))
        rule: dict[str, object] = {"origin": list(r.origins), "method": list(r.methods)}
        if headers:
            rule["responseHeader"] = headers
        if r.max_age_s is not None:
            rule["maxAgeSeconds"] = r.max_age_s
        out.append(rule)
    return out


def cors_fix(
    provider: str, bucket: str, origin: str, rules: list[CorsRule] | tuple[CorsRule, ...], account: str = ""
) -> str:
    """The exact command (and JSON) that makes `origin` ALLOWED on this provider, keeping unrelated rules."""
    wanted = recommended_rules(rules, origin)
    if provider == "s3":
        doc = json.dumps(s3_cors_json(wanted), separators=(",", ":"))
        return f"aws s3api put-bucket-cors --bucket {shlex.quote(bucket)} --cors-configuration {shlex.quote(doc)}"
    if provider == "gcs":
        doc = json.dumps(gcs_cors_json(wanted), indent=2)
        return f"write cors.json:\n{doc}\nthen run: gcloud storage buckets update gs://{bucket} --cors-file=cors.json"
    if provider == "azure":
        # Azure's CORS is per storage account and service; `az storage cors add` appends, so a broad or partial
        # rule is cleared first and the rules worth keeping are added back.
        lines = [f"az storage cors clear --services b --account-name {shlex.quote(account)}"]
        for r in wanted:
            parts = [
                "az storage cors add --services b",
                f"--methods {' '.join(r.methods)}",
                f"--origins {' '.join(shlex.quote(o) for o in r.origins)}",
                f"--allowed-headers {' '.join(shlex.quote(h) for h in r.headers) or shlex.quote('*')}",
            ]
            if r.exposed:
                parts.append(f"--exposed-headers {' '.join(r.exposed)}")
            if r.max_age_s is not None:
                parts.append(f"--max-age {r.max_age_s}")
            parts.append(f"--account-name {shlex.quote(account)}")
            lines.append(" ".join(parts))
        return "\n".join(lines)
    return ""


def verdict_for(
    provider: str,
    bucket: str,
    origin: str,
    rules: list[CorsRule],
    *,
    private: bool,
    account: str = "",
    needed_headers: tuple[str, ...] = NEEDED_HEADERS,
) -> CorsVerdict:
    """The judge's verdict with the provider's fix attached (no fix when ALLOWED)."""
    origin = normalise_origin(origin)
    status, reason = judge_cors(rules, origin, private=private, needed_headers=needed_headers)
    fix = "" if status is CorsStatus.ALLOWED else cors_fix(provider, bucket, origin, rules, account)
    return CorsVerdict(origin, status, reason, fix, tuple(rules))
