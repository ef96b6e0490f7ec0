"""Primitives the built-in handlers' connection pools share."""

from __future__ import annotations

import select
import socket
import sys
import threading
from typing import Any


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
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
