"""A real threaded HTTP/1.1 keep-alive server on a free port, for handler tests.

Each request is answered after ``delay`` seconds with ``status`` (and a
Retry-After header when ``retry_after`` is set). A request can override these
for itself through its query string: ``?status=503&retry_after=1&delay=0.2&size=100``
(``size``: body bytes; ``times=N``: the status and Retry-After apply to the
first N requests for that exact path and query only, later ones get 200). The server counts the TCP connections it accepted and
records every request (time, method, path, headers, body), so tests can check
reuse and timing without trusting the client.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.server.owner._connected(self.connection)
        if self.server.owner.idle_timeout is not None:
            self.connection.settimeout(self.server.owner.idle_timeout)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._disconnected(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- keep test output quiet
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        seen_before = owner._record(Seen(time.time(), self.command, self.path,
                                         {k.lower(): v for k, v in self.headers.items()}, body))
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        delay = float(query.get("delay", owner.delay))
        if delay:
            time.sleep(delay)
        planned = "times" not in query or seen_before < int(query["times"])
        status = int(query.get("status", owner.status)) if planned else 200
        payload = self._body(query)
        self.send_response(status)
        retry_after = query.get("retry_after", owner.retry_after) if planned else None
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _body(self, query: dict[str, str]) -> bytes:
        if "size" in query:
            return b"x" * int(query["size"])
        return f"{self.command} {urlsplit(self.path).path}\n".encode()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # thousands of clients may connect at once; the default backlog of 5 drops SYNs
    owner: "HttpServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients dropping their connections is normal here (timeouts, pool shutdowns)


class HttpServer:
    """``with HttpServer(delay=0.05) as server: server.url("/x")``; ``server.connections`` counts accepts."""

    def __init__(self, *, delay: float = 0.0, status: int = 200, retry_after: str | int | None = None,
                 idle_timeout: float | None = None, host: str = "127.0.0.1") -> None:
        self.delay = delay
        self.status = status
        self.retry_after = retry_after
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.open_connections = 0
        self.peak_connections = 0
        self.requests: list[Seen] = []
        self._per_path: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"http-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # keep-alive handler threads would otherwise wait for their clients
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if urlsplit(r.path).path == path]

    def _record(self, seen: Seen) -> int:
        """Record a request; how many requests for the same path and query came before it."""
        with self._lock:
            before = self._per_path.get(seen.path, 0)
            self._per_path[seen.path] = before + 1
            self.requests.append(seen)
            return before

    def _connected(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self.open_connections += 1
            self.peak_connections = max(self.peak_connections, self.open_connections)
            self._sockets.add(sock)

    def _disconnected(self, sock: socket.socket) -> None:
        with self._lock:
            self.open_connections -= 1
            self._sockets.discard(sock)

    def __enter__(self) -> "HttpServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
