"""A local HTTP server that replays scripted Kubernetes API responses and records the requests.

No API server can run here, so the backend is tested at its HTTP boundary: each test scripts the
replies (shaped like kube-apiserver's: Status bodies, lists with a resourceVersion, watch event
lines) and then checks the requests the backend actually sent.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: object = None
    # Watch replies: each event is written as one JSON line in its own chunk.
    events: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class ReplayApiServer:
    replies: dict[tuple[str, str], deque[Reply]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    url: str = ""

    def expect(self, method: str, path: str, *replies: Reply) -> None:
        self.replies.setdefault((method, path), deque()).extend(replies)

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def next_reply(self, method: str, path: str) -> Reply | None:
        queue = self.replies.get((method, path))
        if not queue:
            self.unexpected.append(f"{method} {path}")
            return None
        return queue.popleft()


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A `Status` failure as kube-apiserver encodes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _handler(state: ReplayApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.requests.append(
                Request(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
            )
            reply = state.next_reply(self.command, parts.path)
            if reply is None:
                reply = Reply(599, status_body(599, "Unscripted", f"no reply scripted for {self.command}"))
            if reply.events is not None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in reply.events:
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


class RunningServer:
    """Starts the replay server on a loopback port; stop() shuts it down."""

    def __init__(self) -> None:
        self.state = ReplayApiServer()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.state.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
