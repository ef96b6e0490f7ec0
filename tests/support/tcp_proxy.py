"""A small TCP proxy between a client and Redis that can cut a connection in the middle of a reply.

    with TcpProxy(redis_server.port) as proxy:
        url = proxy.url_for(db)                            # point the worker here
        proxy.cut_reply(after=4096, request_contains=b"LMOVE")
        ...
        proxy.wait_cut()

Armed with cut_reply(), the next connection whose client sends a request holding
those bytes gets only the first `after` bytes of what Redis answers; then both
sides are closed. Redis has run the commands by then, so the client loses replies
to moves that happened: what a network failure or a proxy restart does.

Armed with drop_client(), the next such request is passed on to Redis and then only
the client's side is closed: Redis keeps the connection (and a blocking command on
it) and its replies go nowhere, as behind a middlebox that dropped one side.
Each connection is served by one thread; nothing is buffered beyond one read.
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType

_READ = 65536


class _Cut:
    """One armed cut: the request bytes that trigger it, how much of the reply gets through,
    and whether Redis's side of the connection stays open."""

    def __init__(self, after: int, request_contains: bytes, keep_server: bool = False) -> None:
        self.after, self.request_contains, self.keep_server = after, request_contains, keep_server


class TcpProxy:
    """Listens on a free port of 127.0.0.1 and forwards every connection to target_host:target_port."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self._listener = socket.create_server((self.host, 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: _Cut | None = None
        self._cut_done = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.connections = 0
        self.cuts = 0
        self.bytes_let_through = 0  # of the reply that was cut

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def cut_reply(self, after: int, request_contains: bytes) -> None:
        """Arm one cut (see the module docstring); wait_cut() tells when it happened."""
        with self._lock:
            self._armed = _Cut(after, request_contains)
            self._cut_done.clear()

    def drop_client(self, request_contains: bytes) -> None:
        """Arm one one-sided drop (see the module docstring); wait_cut() tells when it happened."""
        with self._lock:
            self._armed = _Cut(0, request_contains, keep_server=True)
            self._cut_done.clear()

    def wait_cut(self, timeout: float = 10.0) -> bool:
        return self._cut_done.wait(timeout)

    # -- life cycle ----------------------------------------------------------

    def start(self) -> "TcpProxy":
        threading.Thread(target=self._accept_forever, name=f"tcp-proxy-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._closed = True
        _close(self._listener)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)  # the target is down: the client sees the connection drop, as it would
                continue
            server.settimeout(None)
            with self._lock:
                self.connections += 1
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _take_cut(self, seen: bytes) -> _Cut | None:
        with self._lock:
            cut = self._armed
            if cut is not None and cut.request_contains in seen:
                self._armed = None
                return cut
        return None

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        """Forward both ways until either side closes; apply a cut to this connection if one triggers."""
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ)
        selector.register(server, selectors.EVENT_READ)
        cut: _Cut | None = None
        let_through = 0
        tail = b""  # the end of the previous request chunk, so a pattern split across reads still matches
        try:
            while True:
                for key, _ in selector.select():
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(_READ)
                    if not data:
                        return
                    if source is client:
                        if cut is None:
                            cut = self._take_cut(tail + data)
                            tail = data[-64:]
                        server.sendall(data)
                        if cut is not None and cut.keep_server:
                            selector.unregister(client)
                            _close(client)
                            self._cut_happened(0)
                        continue
                    if cut is None:
                        client.sendall(data)
                        continue
                    if cut.keep_server:
                        continue  # the client is gone; Redis's replies go nowhere
                    part = data[:cut.after - let_through]
                    client.sendall(part)
                    let_through += len(part)
                    if let_through >= cut.after:
                        self._cut_happened(let_through)
                        return
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, server):
                _close(sock)
                with self._lock:
                    self._sockets.discard(sock)

    def _cut_happened(self, let_through: int) -> None:
        with self._lock:
            self.cuts += 1
            self.bytes_let_through = let_through
        self._cut_done.set()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
