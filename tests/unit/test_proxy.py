"""The test proxy itself: forwards faithfully, injects exactly the faults its plan says, classifies requests.

The fault and read-only tests trust its log and its counts, so they are checked here against a tiny upstream on
loopback (no emulator needed).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.proxy import FaultPlan, FaultProxy, classify


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"streamed ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        body = f"{self.command} {self.path} host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def get(endpoint: str, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    host, port = endpoint.removeprefix("http://").split(":")
    conn = conn or http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def test_forwards_unchanged_and_records(upstream: str) -> None:
    with FaultProxy(upstream, provider="s3") as proxy:
        host, port = proxy.endpoint.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)  # one keep-alive connection for all
        status, body = get(proxy.endpoint, "/bkt/a%20b.jpg?x-id=GetObject", conn)
        assert status == 200
        assert body == f"GET /bkt/a%20b.jpg?x-id=GetObject host={host}:{port}".encode(), "path and Host kept"
        assert get(proxy.endpoint, "/chunked", conn) == (200, b"hello streamed world")
        conn.request("PUT", "/bkt/k", body=b"payload")
        assert conn.getresponse().read() == b"payload"
        seen = proxy.requests
    assert [(r.method, r.path, r.status) for r in seen] == [
        ("GET", "/bkt/a%20b.jpg", 200),
        ("GET", "/chunked", 200),
        ("PUT", "/bkt/k", 201),
    ]
    assert seen[1].bytes_out == len(b"hello streamed world")
    assert [r.is_write for r in seen] == [False, False, True]
    assert proxy.count(method="GET", path_contains="a b.jpg") == 1


def test_rewrites_host_for_gcs(upstream: str) -> None:
    with FaultProxy(upstream, provider="gcs") as proxy:
        _, body = get(proxy.endpoint, "/bkt/key")
    assert body.endswith(f"host={upstream.removeprefix('http://')}".encode())


def test_injects_the_planned_faults_and_no_others(upstream: str) -> None:
    plan = FaultPlan(every=3, burst=1, kinds=("503", "429", "500", "drop", "delay"), delay_s=0.05, max_faults=4)
    outcomes = []
    with FaultProxy(upstream, provider="azure", plan=plan) as proxy:
        for i in range(15):
            try:
                outcomes.append(get(proxy.endpoint, f"/acct/ctr/blob-{i}")[0])
            except (ConnectionError, http.client.HTTPException):
                outcomes.append("dropped")
        faults = proxy.faults
    # Requests 1, 4, 7, 10 are spoiled (503, 429, 500, drop); the cap of 4 spares request 13.
    assert outcomes[0::3] == [503, 429, 500, "dropped", 200]
    assert all(o == 200 for i, o in enumerate(outcomes) if i % 3)
    assert faults == {"503": 1, "429": 1, "500": 1, "drop": 1}


def test_plan_filters_by_path() -> None:
    plan = FaultPlan(every=2, burst=1, kinds=("503",), path_contains="stuck.jpg")
    assert plan.eligible("GET", "/bkt/data/stuck.jpg") and not plan.eligible("GET", "/bkt/data/fine.jpg")
    assert [plan.decide(n, 0) for n in range(1, 5)] == ["503", None, "503", None]
    with pytest.raises(ValueError, match="burst"):
        FaultPlan(every=2, burst=2)


@pytest.mark.parametrize(
    ("provider", "method", "path", "query", "kind"),
    [
        ("s3", "GET", "/bkt", "list-type=2&prefix=data%2F", "list"),
        ("s3", "GET", "/bkt/data/a.jpg", "x-id=GetObject", "object"),
        ("s3", "HEAD", "/bkt/data/a.jpg", "", "object"),
        ("gcs", "GET", "/storage/v1/b/bkt/o", "prefix=data%2F", "list"),
        ("gcs", "GET", "/storage/v1/b/bkt/o/data%2Fa.jpg", "alt=media", "object"),
        ("gcs", "GET", "/download/storage/v1/b/bkt/o/data%2Fa.jpg", "alt=media", "object"),
        ("gcs", "GET", "/bkt/data/a.jpg", "", "object"),
        ("gcs", "GET", "/storage/v1/b/bkt", "", "bucket"),
        ("azure", "GET", "/acct/ctr", "restype=container&comp=list", "list"),
        ("azure", "GET", "/acct/ctr/data/a.jpg", "", "object"),
        ("azure", "GET", "/acct", "comp=list", "service"),
    ],
)
def test_classify(provider: str, method: str, path: str, query: str, kind: str) -> None:
    from urllib.parse import parse_qs

    assert classify(provider, method, path, parse_qs(query)) == kind  # type: ignore[arg-type]
