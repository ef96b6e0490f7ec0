"""Proves the worker is alive — and making progress — from a thread of its own.

The heartbeat runs in a native thread, not a greenlet, so a handler that
blocks the hub for a while (CPU work, an unpatched C library) does not stop
it. But a heartbeat must prove progress, not only a live process: the hub
ticks a timestamp, and the thread refreshes the heartbeat only while that
tick is fresh. A hub stalled for less than dead_after is never reaped; one
wedged for longer stops beating and is.

The times in the worker's description (started_at, beat_at) are Redis's, from
the worker's RedisClock, which each beat re-syncs: `geoq workers` and `stats`
subtract them from Redis's time, so this host's clock error never shows as age.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import deque
from typing import Callable, Sequence

import gevent
from gevent import monkey

from geoq.broker.clock import RedisClock
from geoq.broker.connection import connect
from geoq.broker.liveness import Registry
from geoq.config import Config, connection_split
from geoq.errors import BrokerError
from geoq.middleware import NO_EVENTS, Chain
from geoq.outage import Outage

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between the hub's proofs of progress
_allocate_lock = monkey.get_original("_thread", "allocate_lock")


def new_worker_id() -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{os.urandom(3).hex()}"


class Heartbeat:
    """Registration, the hub tick (a greenlet) and the beat (a native thread)."""

    def __init__(self, config: Config, registry: Registry, worker_id: str, queues: Sequence[str], *,
                 in_flight: Callable[[], int], on_fenced: Callable[[], None], clock: RedisClock,
                 events: Chain = NO_EVENTS) -> None:
        self.config, self.registry, self.worker_id = config, registry, worker_id
        self.queues = list(queues)
        self.interval, self.ttl = config.worker.heartbeat, config.worker.dead_after
        self.in_flight, self.on_fenced = in_flight, on_fenced
        self.on_error = events.redis_error
        self.clock = clock
        self.started_at = 0.0   # Redis time of registration
        self.tick_at = time.monotonic()
        self._stopped = False
        self._fenced = False
        # Real locks (two OS threads use them): stop() releases _wake to end the thread's wait
        # at once; the thread holds _running until its hub is destroyed.
        self._wake, self._running = _allocate_lock(), _allocate_lock()
        # The thread never logs or calls hooks itself (logging's locks belong to the hub):
        # it leaves news here and the tick greenlet relays it.
        self._news: deque[tuple[int, str, bool]] = deque(maxlen=100)
        self._outage = Outage(self._tell, "heartbeat failed: %s", "heartbeat written again", repeats=logging.DEBUG)

    def info(self) -> str:
        return json.dumps({"id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "queues": self.queues, "concurrency": self.config.worker.concurrency,
                           "in_flight": self.in_flight(), "started_at": round(self.started_at, 3),
                           "beat_at": round(self.clock.now(), 3), "dead_after": self.ttl},
                          separators=(",", ":"))

    def register(self) -> None:
        self.clock.sync(self.registry.client)
        self.started_at = self.clock.now()
        self.registry.register(self.worker_id, self.info(), self.queues, self.ttl)

    def start(self) -> gevent.Greenlet:
        """Start the beat thread; return the tick greenlet (it also relays fencing to the hub)."""
        self._wake.acquire()
        self._running.acquire()
        start_thread = monkey.get_original("_thread", "start_new_thread")
        start_thread(self._beat_thread, ())
        return gevent.spawn(self._tick_forever)

    def stop(self) -> None:
        """Stop beating; the thread wakes from its wait at once and ends after any beat under way."""
        self._stopped = True
        if self._wake.locked():
            self._wake.release()

    def ended(self, timeout: float) -> bool:
        """Wait, letting the hub run, until the beat thread has ended; False on timeout.

        The worker deregisters only after this: a beat already under way when stop() came
        writes the worker's description back (its HSET is not conditional: a Cluster puts the
        description and the heartbeat in different slots, so no script can join them), and
        the deregistered worker would be listed again until a reaper removed it.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while self._running.locked():
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.005)
        return True

    def join(self, timeout: float) -> bool:
        """Wait (blocking the hub: call it last) until the beat thread has ended; False on timeout.

        A native thread that still runs greenlets of its own hub while the interpreter
        finalizes can crash the process at exit (seen as SIGSEGV after a clean stop), so
        the worker lets it end, hub destroyed, before it returns.
        """
        if not self._running.acquire(timeout=max(0.0, timeout)):
            return False
        self._running.release()
        return True

    def _tick_forever(self) -> None:
        while not self._stopped:
            self.tick_at = time.monotonic()
            while self._news:
                level, message, failed = self._news.popleft()
                if failed:
                    self.on_error("heartbeat")
                log.log(level, "%s", message)
            if self._fenced:
                self._fenced = False
                self.on_fenced()
            gevent.sleep(TICK)

    def _beat_thread(self) -> None:
        """The native thread: its own Redis connection, its own (thread-local) gevent hub, both
        closed when it ends, and then the lock join() waits on released."""
        try:
            _unwatched_hub()
            client = connect(self.config.redis, max_connections=connection_split(self.config).heartbeat,
                             name=f"geoq-heartbeat:{self.worker_id}")
            try:
                self._beat_forever(Registry(client, self.registry.scripts))
            finally:
                client.close()
        finally:
            gevent.get_hub().destroy(destroy_loop=True)
            self._running.release()

    def _beat_forever(self, registry: Registry) -> None:
        client = registry.client
        while not self._stopped:
            self._wake.acquire(timeout=self.interval)  # released only by stop()
            if self._stopped or time.monotonic() - self.tick_at > self.interval + 1.0:
                continue  # the hub has not shown progress: let the heartbeat lapse
            try:
                self.clock.sync(client)
                alive = registry.beat(self.worker_id, self.ttl, self.info())
            except BrokerError as e:
                self._outage.failed(e)
                continue
            self._outage.recovered()
            if not alive:
                self._fenced = True  # read by the tick greenlet: only the hub may act on it
                return

    def _tell(self, level: int, msg: str, *args: object) -> None:
        """The beat thread's outage sink: each line becomes news for the tick greenlet to log and,
        if it is a failure's, to count as a Redis error (the thread may do neither itself)."""
        self._news.append((level, msg % args, self._outage.failing))


def _unwatched_hub() -> None:
    """Give this thread a hub without the blocking monitor gevent starts for every hub when enabled.

    gevent starts that monitor when a hub first runs. This hub never switches (the thread
    sleeps with the unpatched time.sleep), so its monitor would report it blocked ten times a
    second, each report formatting every greenlet in the process: CPU the worker's hub needs.
    """
    gevent.sleep(0)  # the hub's first run, where gevent starts its monitor
    hub = gevent.get_hub()
    if hub.periodic_monitoring_thread is not None:
        hub.periodic_monitoring_thread.kill()
        hub.periodic_monitoring_thread = None
