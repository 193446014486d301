"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records what bucket-sync posts to it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hooktoken-5f1e9c0a7b3d4e2f8a6c"
QUERY_TOKEN = "qsecret-9a8b7c6d5e4f3a2b1c0d"


class Webhook:
    """A local HTTP server that records each POST's path and JSON body, answering from `answers` first, then 200."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.answers: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code = hook.answers.pop(0) if hook.answers else 200
                if code < 300:
                    hook.posts.append(json.loads(body))
                    hook.paths.append(self.path)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/{TOKEN}?token={QUERY_TOKEN}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
