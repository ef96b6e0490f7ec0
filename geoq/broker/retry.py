"""Reads that ride out a failover: tried again, for a bounded time, on fresh connections.

A read (a job's status or result, queue counts, the dead list, the workers)
changes nothing, so sending it twice is harmless; a write is never sent twice
by geoq (see connection.py), and nothing here is used for one.

While a master is being replaced, reads fail for a few seconds with
RedisUnavailable: connection refused or reset (the master died), CLUSTERDOWN,
TRYAGAIN or a MOVED storm (the slot map is changing), LOADING (a server
still reading its data), no master found (the sentinels have not agreed yet).
`retry_read` tries such a read again, with a short growing pause, until it
answers or its time is up, then raises the last error. Before each new try
the caller's `refresh` drops what the failover made stale (connection.renew:
the Cluster slot map, pooled connections, so that Sentinel is asked again).
Every other error (authentication, ACL, a bad command) is final: raised at once.

The bound: `read_patience(cfg)`, the longer of READ_PATIENCE and one
connect plus one reply timeout (so a slow attempt still gets a second one).
It covers a Cluster failover with cluster-node-timeout up to about 8 s, or a
Sentinel one with down-after-milliseconds up to about 5 s; a longer outage
is reported, not waited out. No new try starts after the bound; a try under
way may end up to its socket timeout later.

Reads nest (`geoq job` reads a status among others): only the outermost
`retry_read` retries and owns the bound; one inside it tries once, so an
outage is never waited out once per level.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Callable, TypeVar

import redis.exceptions as rex

from geoq.broker.errors import translate
from geoq.config import RedisConfig
from geoq.errors import RedisUnavailable

T = TypeVar("T")

READ_PATIENCE = 10.0   # seconds a read keeps trying through an outage, at the least
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 0.5

_retrying: ContextVar[bool] = ContextVar("geoq_read_retrying", default=False)


def read_patience(cfg: RedisConfig) -> float:
    """Seconds a read may keep trying with these connection settings."""
    return max(READ_PATIENCE, cfg.connect_timeout + cfg.socket_timeout)


def retry_read(read: Callable[[], T], refresh: Callable[[], None], within: float) -> T:
    """read(), tried again after a passing Redis failure until `within` seconds have gone.

    `read` must change nothing in Redis. `refresh` runs before each new try. Raises
    read's last error when the time is up, and any error that is not passing at once.
    """
    if _retrying.get():
        return read()
    token = _retrying.set(True)
    try:
        return _tries(read, refresh, time.monotonic() + within)
    finally:
        _retrying.reset(token)


def _tries(read: Callable[[], T], refresh: Callable[[], None], deadline: float) -> T:
    pause = _FIRST_PAUSE
    while True:
        try:
            return read()
        except Exception as e:  # noqa: BLE001 - sorted right below: passing or final
            if not passing(e) or time.monotonic() >= deadline:
                raise
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, _MAX_PAUSE)
        refresh()


def passing(error: BaseException) -> bool:
    """True for the failures of a Redis being restarted or replaced, which a read may wait out.

    READONLY counts (a master demoted under a connection), though only a write meets it.
    """
    if isinstance(error, rex.ReadOnlyError) or isinstance(error.__cause__, rex.ReadOnlyError):
        return True
    if isinstance(error, (rex.RedisError, rex.RedisClusterException)):
        error = translate(error, "read")   # one that escaped the broker's translation
    return isinstance(error, (RedisUnavailable, OSError))
