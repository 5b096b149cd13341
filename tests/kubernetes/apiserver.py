"""A local HTTP server that replays bodies recorded from the real kube-apiserver with one fault a
real server cannot produce on demand: silence in the middle of a body, a malformed chunk of a
watch stream, a garbled line, a 5xx/429 answer. Everything a real apiserver can answer is tested
on the real one (test_backend.py); RELIABILITY.md lists the tests that still use this server.
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
    # Only this many bytes of the JSON body are sent (Content-Length announces all), then silence.
    hang_after: int | None = None
    # A chunked reply made of exactly these raw bytes after the headers (watch streams, malformed
    # on purpose); the connection is closed after them.
    chunked: bytes | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class ReplayApiServer:
    replies: dict[tuple[str, str], deque[Reply]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    url: str = ""
    released: threading.Event = field(default_factory=threading.Event)

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


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `Status` failure as kube-apiserver encodes it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(state: ReplayApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.requests.append(Request(self.command, parts.path, dict(parse_qsl(parts.query))))
            reply = state.next_reply(self.command, parts.path)
            if reply is None:
                reply = Reply(599, status_body(599, "Unscripted", f"no reply scripted for {self.command}"))
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            if reply.chunked is not None:
                self.send_header("Transfer-Encoding", "chunked")
                # Announced, as a real server does: a client that reuses a connection the server
                # closes unannounced gets "disconnected without sending a response" by chance.
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply.chunked)
                self.wfile.flush()
                self.close_connection = True
                return
            payload = json.dumps(reply.body).encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if reply.hang_after is None:
                self.wfile.write(payload)
                return
            self.wfile.write(payload[: reply.hang_after])
            self.wfile.flush()
            state.released.wait(60)
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

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
        self.state.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
