"""A recording, fault-injecting HTTP/1.1 reverse proxy on loopback, for tests against the provider emulators.

Why it exists: what a sync sends to a bucket, and how it copes with a service that throttles and drops
connections, can only be proven from the server's side of the wire, not from our own code. Clients are pointed at
`proxy.endpoint` in place of the emulator's; the proxy forwards every request unchanged (the Host header included,
which S3 SigV4 signs; Azure SharedKey signs the path, which is also kept), records it, and, following a
deterministic `FaultPlan`, answers some requests with 429/500/503, resets the connection, or delays them.

Filtering the log (see `Recorded.kind`):

- S3 (path style): a listing is `GET /<bucket>` with `list-type=2`; an object request is `/<bucket>/<key>`.
- GCS: a listing is `GET /storage/v1/b/<bucket>/o`; an object request is `/<bucket>/<key>` (XML API, obstore) or
  `/storage/v1/b/<bucket>/o/<key>` and `/download/storage/v1/b/<bucket>/o/<key>` (JSON API, SDK).
- Azure (IP-style URL): a listing is `GET /<account>/<container>?restype=container&comp=list`; an object request
  is `/<account>/<container>/<blob>`.

`proxy.object_reads()` gives the GET/HEAD object requests, `proxy.listings()` the list requests, and
`proxy.writes()` every request that could change the bucket.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

Provider = Literal["s3", "gcs", "azure"]
FaultKind = Literal["429", "500", "503", "drop", "delay"]
RequestKind = Literal["list", "object", "bucket", "service"]

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade", "proxy-connection"}
)  # fmt: skip
_WRITE_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})
#: Query parameters that name a mutating operation even on a GET (S3 `x-id`, multipart and ACL sub-resources).
_WRITE_X_IDS = ("Put", "Delete", "Copy", "Create", "Complete", "Upload", "Abort", "Restore")


@dataclass(frozen=True)
class FaultPlan:
    """Which requests to spoil, deterministically and boundedly.

    Eligible requests are numbered in arrival order from 1. After `start_after` of them, the first `burst` requests
    of every `every` are faulty; each burst takes the next kind from `kinds`, round robin, so a plan with
    `every=5, burst=2` spoils requests 1-2 (503), 6-7 (429), 11-12 (500), and so on: with `start_after=0` the
    very first request (the listing) and its first retry are spoiled. `max_faults` caps the total so a test
    can never turn into an outage. `methods` and `path_contains` (matched against the decoded path) limit which
    requests are eligible (None: all).
    """

    every: int = 0
    kinds: tuple[FaultKind, ...] = ("503", "429", "500", "drop", "delay")
    burst: int = 1
    delay_s: float = 0.5
    max_faults: int | None = None
    start_after: int = 0
    methods: tuple[str, ...] | None = None
    path_contains: str | None = None

    def __post_init__(self) -> None:
        if self.every < 0 or self.burst < 1 or (self.every and self.burst >= self.every):
            raise ValueError("need every >= 0 and 1 <= burst < every (a plan must let requests through)")
        if self.delay_s > 5:
            raise ValueError("delays above 5 s would make tests slow without proving more")

    def eligible(self, method: str, raw_path: str = "") -> bool:
        return (self.methods is None or method in self.methods) and (
            self.path_contains is None or self.path_contains in unquote(raw_path)
        )

    def decide(self, n: int, injected: int) -> FaultKind | None:
        """The fault for the n-th eligible request (1-based), given how many were injected already."""
        if not self.every or not self.kinds or n <= self.start_after:
            return None
        if self.max_faults is not None and injected >= self.max_faults:
            return None
        position = (n - self.start_after - 1) % self.every
        if position >= self.burst:
            return None
        cycle = (n - self.start_after - 1) // self.every
        return self.kinds[cycle % len(self.kinds)]


NO_FAULTS = FaultPlan()


@dataclass(frozen=True)
class Recorded:
    """One request as the proxy saw it. `path` is the raw (percent-encoded) path; `status` is None for a drop."""

    n: int
    method: str
    path: str
    query: str
    status: int | None
    bytes_in: int
    bytes_out: int
    fault: FaultKind | None
    provider: Provider

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def kind(self) -> RequestKind:
        """What the request addresses: a listing, one object, a bucket/container, or the service."""
        return classify(self.provider, self.method, self.path, self.params)

    @property
    def is_write(self) -> bool:
        """Whether the request could change the bucket (a mutating method or a mutating sub-resource)."""
        if self.method in _WRITE_METHODS:
            return True
        params = self.params
        x_ids = params.get("x-id", [])
        return any(v.startswith(_WRITE_X_IDS) for v in x_ids) or "uploads" in params or "uploadId" in params


def classify(provider: Provider, method: str, raw_path: str, params: dict[str, list[str]]) -> RequestKind:
    """Sort one request into list / object / bucket / service, per provider URL layout (see the module doc)."""
    parts = [unquote(p) for p in raw_path.lstrip("/").split("/")]
    if provider == "s3":
        if not parts or parts == [""]:
            return "service"
        if len(parts) == 1 or (len(parts) == 2 and parts[1] == ""):
            return "list" if method == "GET" and ("list-type" in params or not params) else "bucket"
        return "object"
    if provider == "gcs":
        if parts[:1] == ["download"]:
            parts = parts[1:]
        if parts[:2] == ["storage", "v1"]:
            # storage/v1/b/<bucket>/o[/<name>]
            if len(parts) == 5 and parts[2] == "b" and parts[4] == "o":
                return "list" if method == "GET" else "bucket"
            if len(parts) > 5 and parts[2] == "b" and parts[4] == "o":
                return "object"
            return "bucket" if len(parts) >= 4 else "service"
        if parts[:1] == ["upload"]:
            return "object"
        return "object" if len(parts) >= 2 else ("bucket" if parts[0] else "service")
    # azure, IP-style: /<account>/<container>[/<blob>]
    if len(parts) <= 1 or (len(parts) == 2 and parts[1] == ""):
        return "service"
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == ""):
        return "list" if params.get("comp") == ["list"] else "bucket"
    return "object"


def _error_body(provider: Provider, status: int) -> tuple[bytes, str]:
    """The error each service sends with the status, so each SDK classifies it as it would the real one."""
    if provider == "gcs":
        body = f'{{"error":{{"code":{status},"message":"injected by the test proxy","errors":[]}}}}'
        return body.encode(), "application/json; charset=UTF-8"
    code = {
        ("s3", 429): "SlowDown",
        ("s3", 500): "InternalError",
        ("s3", 503): "SlowDown",
        ("azure", 429): "ServerBusy",
        ("azure", 500): "InternalError",
        ("azure", 503): "ServerBusy",
    }[(provider, status)]
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        "<Message>injected by the test proxy</Message></Error>"
    )
    return body.encode(), "application/xml"


class FaultProxy:
    """The proxy: `with FaultProxy(upstream, provider="s3", plan=FaultPlan(every=5)) as proxy: ... proxy.endpoint`."""

    def __init__(
        self, upstream: str, *, provider: Provider, plan: FaultPlan = NO_FAULTS, rewrite_host: bool | None = None
    ) -> None:
        """`rewrite_host`: send the upstream's own Host header instead of the client's. Off for S3 (SigV4 signs
        Host, and moto routes path-style requests whatever the Host) and Azure (SharedKey signs the path, not the
        Host); on for GCS by default, because fake-gcs-server routes XML API requests by Host (any other Host is
        taken for a virtual-hosted bucket name) and GCS requests carry a bearer token, not a Host signature."""
        split = urlsplit(upstream)
        if split.scheme != "http" or not split.hostname or not split.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream_host, self.upstream_port = split.hostname, split.port
        self.provider: Provider = provider
        self.rewrite_host = provider == "gcs" if rewrite_host is None else rewrite_host
        self.plan = plan
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._inflight = 0  # requests admitted but not yet recorded
        self._records: list[Recorded] = []
        self._seen = 0  # all requests
        self._eligible = 0  # requests the plan may spoil
        self._injected: Counter[str] = Counter()
        self._sockets: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, reset every open client connection so idle keep-alive handlers end, and join."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread = None, None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- the log --------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of every request so far, in arrival order.

        Waits (up to 5 s) for requests in flight to be recorded, so a client that already has its answer never
        sees a log without the request that produced it.
        """
        with self._settled:
            self._settled.wait_for(lambda: self._inflight == 0, timeout=5)
            return list(self._records)

    def clear(self) -> None:
        """Forget the log (not the fault counters), e.g. between a first sync and the re-sync under test."""
        with self._lock:
            self._records.clear()

    @property
    def faults(self) -> dict[str, int]:
        """Faults injected so far, by kind."""
        with self._lock:
            return dict(self._injected)

    @property
    def faults_total(self) -> int:
        with self._lock:
            return sum(self._injected.values())

    def count(
        self, *, method: str | None = None, path_contains: str | None = None, kind: RequestKind | None = None
    ) -> int:
        """How many recorded requests match every filter given."""
        return len(self.select(method=method, path_contains=path_contains, kind=kind))

    def select(
        self, *, method: str | None = None, path_contains: str | None = None, kind: RequestKind | None = None
    ) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (path_contains is None or path_contains in r.path or path_contains in unquote(r.path))
            and (kind is None or r.kind == kind)
        ]

    def object_reads(self) -> list[Recorded]:
        """GET and HEAD requests that address one object (content or metadata), whatever their outcome."""
        return [r for r in self.requests if r.method in ("GET", "HEAD") and r.kind == "object"]

    def listings(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.kind == "list"]

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.is_write]

    # -- used by the handler --------------------------------------------------------------------------------

    def _admit(self, method: str, raw_path: str) -> tuple[int, FaultKind | None]:
        with self._lock:
            self._seen += 1
            self._inflight += 1
            n = self._seen
            fault = None
            if self.plan.eligible(method, raw_path):
                self._eligible += 1
                fault = self.plan.decide(self._eligible, sum(self._injected.values()))
                if fault is not None:
                    self._injected[fault] += 1
            return n, fault

    def _record(self, record: Recorded) -> None:
        with self._settled:
            self._records.append(record)
            self._inflight -= 1
            self._settled.notify_all()

    def _track(self, sock: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._sockets.add if alive else self._sockets.discard)(sock)


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards one client connection's requests, keeping the connection alive as HTTP/1.1 clients expect."""

    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this long

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.owner._track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr log: the proxy keeps its own."""

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _handle(self) -> None:
        owner = self.owner
        body = self._read_body()
        split = urlsplit(self.path)
        n, fault = owner._admit(self.command, split.path)
        recorded = False

        def record(status: int | None, bytes_out: int) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                owner._record(
                    Recorded(
                        n, self.command, split.path, split.query, status, len(body or b""), bytes_out, fault,
                        owner.provider,
                    )
                )  # fmt: skip

        try:
            self._answer(fault, body, record)
        finally:
            record(None, 0)  # whatever went wrong, the request is in the log and no longer in flight

    def _answer(self, fault: FaultKind | None, body: bytes | None, record: Callable[[int | None, int], None]) -> None:
        owner = self.owner
        if fault == "drop":
            # Reset the connection without a word: the client sees "connection reset" / "remote disconnected".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            record(None, 0)
            return
        if fault in ("429", "500", "503"):
            status = int(fault)
            payload, content_type = _error_body(owner.provider, status)
            record(status, len(payload))  # before answering, so the log is complete once the client has the answer
            self.send_response_only(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        if fault == "delay":
            time.sleep(owner.plan.delay_s)
        self._forward(body, record)

    def _forward(self, body: bytes | None, record: Callable[[int | None, int], None]) -> None:
        owner = self.owner
        upstream = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=60)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                lowered = name.lower()
                if lowered in _HOP_BY_HOP or lowered == "content-length":
                    continue
                if lowered == "host" and owner.rewrite_host:
                    value = f"{owner.upstream_host}:{owner.upstream_port}"
                upstream.putheader(name, value)
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            bodyless = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
            sent = 0
            if length is not None or bodyless:
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                if not bodyless:
                    while chunk := response.read(64 * 1024):
                        self.wfile.write(chunk)
                        sent += len(chunk)
            else:
                # A streamed body of unknown length: pass it on chunked, as it arrives.
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while chunk := response.read1(64 * 1024):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
            # The upstream connection is this request's alone, so its `Connection: close` (moto's werkzeug sends it
            # on every answer) says nothing about the client's connection. Closing the client connection here, with
            # the header stripped as hop-by-hop, raced the client's reuse of it: a retry spent on a dead socket
            # never reached the proxy, and the request count came out one short.
            record(response.status, sent)
        except (OSError, http.client.HTTPException):
            # The upstream failed us: tell the client the way a gateway would, and close.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_error(502, "upstream failed")
            record(502, 0)
        finally:
            upstream.close()


for _method in ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"):
    setattr(_ProxyHandler, f"do_{_method}", _ProxyHandler._handle)


def route_through(entry: dict[str, Any], proxy: FaultProxy) -> dict[str, Any]:
    """A copy of a catalog entry whose endpoint points at `proxy` instead of the emulator behind it."""
    upstream = f"http://{proxy.upstream_host}:{proxy.upstream_port}"
    options = dict(entry.get("options", {}))
    endpoint = str(options.get("endpoint") or "")
    if not endpoint.startswith(upstream):
        raise ValueError(f"entry endpoint {endpoint!r} is not the proxy's upstream {upstream}")
    options["endpoint"] = proxy.endpoint + endpoint[len(upstream) :]
    return {**entry, "options": options}


def summarize(records: Iterable[Recorded]) -> dict[str, int]:
    """Counts by `METHOD kind`, for failure messages and report figures."""
    return dict(Counter(f"{r.method} {r.kind}" for r in records))
