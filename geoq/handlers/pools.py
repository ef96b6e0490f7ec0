"""The built-in handlers' connection pool: one generic pool for SMTP sessions and HTTP connections alike.

    pool = ConnectionPool(size, make)          # make() opens a new connection
    result = pool.use(work)                    # work(conn, reused) -> result, in one of `size` slots

`work` returns the connection with `pool.give(conn)` when it is known to be in
a clean state, or drops it with `discard(conn)`; it raises `Stale` when a
reused connection turned out closed before anything was sent or answered, and
`use` then runs it once more on a new connection, at no cost to the job.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
from typing import Any, Callable, Generic, Protocol, TypeVar

__all__ = ["Connection", "ConnectionPool", "Stale", "bounded_semaphore", "discard", "looks_open"]


class Connection(Protocol):
    """What the pool needs of a connection: its socket (None once closed) and close()."""

    @property
    def sock(self) -> socket.socket | None: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Connection)
T = TypeVar("T")


class Stale(Exception):
    """The connection was gone before anything was sent or answered: a fresh one may try again at no risk."""


class ConnectionPool(Generic[C]):
    """At most `size` connections to one server, reused newest first.

    Built on the threading module (see bounded_semaphore), so it is thread-safe
    in a plain program and cooperative in the monkeypatched worker, where a job
    waiting for a slot blocks only its greenlet. Idle connections are checked
    with looks_open before reuse. Once closed, the pool drops every connection
    given back to it.
    """

    def __init__(self, size: int, make: Callable[[], C]) -> None:
        self._slots = bounded_semaphore(size)
        self._idle: list[C] = []
        self._make = make
        self.closed = False

    def use(self, work: Callable[[C, bool], T]) -> T:
        """work(conn, reused) holding one of the `size` slots (waiting while all are busy): on an idle
        connection, or on a new one when none is idle or the idle one was Stale.

        Stale from work on a new connection propagates: the server is closing on us, not merely idle."""
        with self._slots:
            conn = self.take()
            if conn is not None:
                try:
                    return work(conn, True)
                except Stale:
                    pass  # closed while idle, nothing sent or answered: a fresh connection goes on
            return work(self._make(), False)

    def take(self) -> C | None:
        """An idle connection the server has not closed, or None."""
        while self._idle:
            conn = self._idle.pop()
            if looks_open(conn.sock):
                return conn
            discard(conn)
        return None

    def give(self, conn: C) -> None:
        """Keep conn for reuse: only a connection in a clean state, between requests."""
        if self.closed:
            discard(conn)
        else:
            self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections, and from now on each one given back."""
        self.closed = True
        while self._idle:
            discard(self._idle.pop())


def discard(conn: Connection) -> None:
    """Close a connection that will not be used again; a failure to close it changes nothing."""
    try:
        conn.close()
    except OSError:
        pass


def bounded_semaphore(size: int) -> Any:
    """gevent's semaphore in the monkeypatched worker, else threading's.

    Patched, threading.Semaphore still works but its Condition probes its
    own lock on every release, and each failed probe yields to the hub: two
    hub round trips per request, measured as a third of the handler's CPU.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        from gevent.lock import BoundedSemaphore

        return BoundedSemaphore(size)
    return threading.BoundedSemaphore(size)


def looks_open(sock: socket.socket | None) -> bool:
    """An idle pooled connection has nothing to read; a readable one was closed by the server.

    A zero-timeout select costs no round trip, unlike a protocol-level probe.
    """
    if sock is None:
        return False
    try:
        readable, _, _ = _unpatched_select()([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _unpatched_select() -> Any:
    """The operating system's select, found once: with a zero timeout it never blocks, and gevent's
    costs three times as much (a watcher per call), measured in the pooled-connection check."""
    global _select
    if _select is None:
        monkey = sys.modules.get("gevent.monkey")
        patched = monkey is not None and monkey.is_module_patched("select")
        _select = monkey.get_original("select", "select") if monkey is not None and patched else select.select
    return _select


_select: Any = None
