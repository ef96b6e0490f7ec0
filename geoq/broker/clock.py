"""Redis's clock, as seen from this process.

Every time geoq stores, or compares with a stored time, is Redis's: due times,
heartbeats, deaths, history, enqueue times. Scripts read TIME themselves; Python
code that must write a time into a record reads it here, as this host's clock
plus an offset measured with TIME, so one host whose clock is off by hours
(a container without NTP, a VM resumed from a snapshot) leaks nothing into what
other hosts read. Intervals measured in one process keep using time.monotonic().
"""

from __future__ import annotations

import time

import redis

from geoq.broker.errors import redis_errors


def redis_time(client: "redis.Redis") -> float:
    """Redis's own time, unix seconds."""
    with redis_errors("time"):
        seconds, micros = client.time()
    return seconds + micros / 1_000_000


class RedisClock:
    """This host's clock corrected to Redis's. now() does no I/O; sync() reads TIME once.

    The offset is assigned whole (one float), so a thread may sync while others read.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.synced_at: float | None = None   # time.monotonic() of the last sync; None: never

    def sync(self, client: "redis.Redis") -> None:
        """Measure the offset: Redis's time against the middle of the round trip that read it."""
        before = time.time()
        server = redis_time(client)
        self.offset = server - (before + time.time()) / 2
        self.synced_at = time.monotonic()

    def stale(self, max_age: float) -> bool:
        return self.synced_at is None or time.monotonic() - self.synced_at > max_age

    def now(self) -> float:
        """Redis's time now, as of the last sync (this host's time before the first)."""
        return time.time() + self.offset
