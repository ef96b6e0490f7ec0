"""Takes jobs from Redis only as fast as the pool has room for them.

With one queue, each fetch is one round trip: a pipeline of a blocking BLMOVE
for the first job and LMOVEs for the rest of the batch. With several queues,
a non-blocking sweep takes from them in priority order; when all are empty,
one waiter per queue blocks in Redis at once (each on its own connection and
holding its share of the free slots), so a job pushed to any of them starts
within milliseconds, and the sweep resumes as soon as one of them has work.

Paused queues (Client.pause) are skipped. Which queues are paused is read once a second
(one round trip for all of them, never one per job), and every fetch's script checks the
queue's flag itself, so a fetch that was already blocked when the pause came takes nothing:
its job goes back to the head of the ready list in the step that finds the flag.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from typing import AbstractSet, Any, Callable, Protocol, Sequence

import gevent
import redis
from gevent.event import Event

from geoq.broker.broker import Broker
from geoq.errors import BrokerError
from geoq.middleware import NO_EVENTS, Chain
from geoq.outage import Outage

log = logging.getLogger(__name__)

CHECK_EVERY = 10.0  # seconds between checks of the processing list against what runs here
PAUSE_EVERY = 1.0   # seconds between reads of which queues are paused: a pause or resume takes effect within it

Dispatch = Callable[[str, list[bytes], bool], None]   # (queue, envelopes, strays)


class Slots(Protocol):
    """What the fetcher needs of the job runners: room to wait for, and how much there is."""

    def wait_available(self, timeout: float | None = None) -> Any: ...

    def free_count(self) -> int: ...

Holding = Callable[[str], "Counter[bytes]"]


class Fetcher:
    """The fetch loop of one worker. `dispatch(queue, envelopes)` must start every job it is given."""

    paused: AbstractSet[str] = frozenset()   # queues found paused at the last read (or by a fetch since)

    def __init__(self, broker: Broker, blocking: "redis.Redis", worker_id: str, queues: Sequence[str],
                 weights: Sequence[float] | None, pool: Slots, dispatch: Dispatch, *, batch: int,
                 block_timeout: float, holding: Holding, events: Chain = NO_EVENTS) -> None:
        self.broker, self.blocking, self.worker_id = broker, blocking, worker_id
        self.queues, self.weights = list(queues), list(weights) if weights else None
        self.pool, self.dispatch = pool, dispatch
        self.batch, self.block_timeout = batch, block_timeout
        self.on_error, self.on_batch = events.redis_error, events.fetched
        self.stopping = Event()
        self.reserved = 0          # slots promised to waiters still blocked in Redis
        self._waiting: dict[str, gevent.Greenlet] = {}
        self._woken = Event()
        self.holding = holding
        self._outage = Outage(log.log, "fetch failed, backing off: %s", "fetching again")
        # After a failed fetch its reply may be lost while Redis moved the jobs, and a fetch Redis
        # still holds on a half-closed connection can move more until its block time ends: the
        # processing list is checked at once and again once that window has passed.
        self._unsure_until = 0.0
        self._checked_once = False
        self.failed_at = 0.0       # monotonic time of the last failed fetch: Redis may still carry it out
        # Even with no error seen, Redis can lose writes it acknowledged: after a failover, the
        # new master lacks what the old one took last, so an ack may be undone and its job sit
        # in our processing list with nobody running it. A periodic check finds such jobs.
        self._next_check = time.monotonic() + CHECK_EVERY
        self._next_pause_read = 0.0

    def stop(self) -> None:
        self.stopping.set()
        self._woken.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            free = self._free_slots()
            if free <= 0 or self.stopping.is_set():  # a stop while the pool was full: no fetch after it
                continue
            try:
                if self._check_due():
                    self._reconcile()   # the strays it runs take slots: the next turn counts them again
                else:
                    self._read_paused()
                    self._round(free)
            except BrokerError as e:
                self._fetch_failed(e)
            else:
                self._outage.recovered()

    def _check_due(self) -> bool:
        now = time.monotonic()
        if self._unsure_until and (not self._checked_once or now > self._unsure_until):
            return True
        return now >= self._next_check

    def _free_slots(self) -> int:
        """Wait until the pool has a slot no waiter has claimed; the count, at most one batch."""
        self.pool.wait_available()
        free = self.pool.free_count() - self.reserved
        if free <= 0:  # every free slot is promised to a waiter: wait for one to come back
            self._woken.clear()
            self._woken.wait(self.block_timeout)
        return int(min(free, self.batch))

    def _read_paused(self) -> None:
        """Which queues are paused, read at most once every PAUSE_EVERY seconds."""
        now = time.monotonic()
        if now >= self._next_pause_read:
            self.paused = self.broker.paused(self.queues)
            self._next_pause_read = now + PAUSE_EVERY

    def _block(self) -> float:
        """How long a fetch blocks: while a queue is paused, short enough to see its resume in time."""
        return min(self.block_timeout, PAUSE_EVERY) if self.paused else self.block_timeout

    def _round(self, free: int) -> None:
        if len(self.paused) >= len(self.queues):  # nothing to take: wait for the next read of the flags
            self.stopping.wait(max(0.0, self._next_pause_read - time.monotonic()))
            return
        if len(self.queues) == 1:
            self._take(self.queues[0], free, self._block())
            return
        if self._sweep(free) == 0:
            self._block_on_all(free)

    def _take(self, queue: str, n: int, block: float | None) -> int:
        client = self.blocking if block else self.broker.client
        envelopes = self.broker.fetch(client, queue, self.worker_id, n, block)
        if envelopes.paused:
            self.paused = self.paused | {queue}
        if envelopes:
            self.on_batch(len(envelopes))
            self.dispatch(queue, envelopes, False)
        return len(envelopes)

    def _sweep(self, free: int) -> int:
        """Take without blocking, queue by queue in priority order, until the slots are filled."""
        taken = 0
        for queue in self._order():
            if queue in self._waiting:
                continue  # a waiter is already blocked there and will bring its jobs
            taken += self._take(queue, free - taken, None)
            if taken >= free or self.stopping.is_set():
                break
        return taken

    def _block_on_all(self, free: int) -> None:
        idle = [q for q in self._order() if q not in self._waiting]
        share = max(1, free // max(1, len(idle)))
        self._woken.clear()
        for queue in idle[:free]:
            self.reserved += share
            self._waiting[queue] = gevent.spawn(self._wait_on, queue, share)
        self._woken.wait(self._block() + 1.0)

    def _wait_on(self, queue: str, share: int) -> None:
        try:
            if self._take(queue, share, self._block()):
                self._woken.set()
        except BrokerError as e:
            self._fetch_failed(e)
        finally:
            self.reserved -= share
            self._waiting.pop(queue, None)
            if not self._waiting:
                self._woken.set()

    def _order(self) -> list[str]:
        """The queues to take from, in this round's order; paused ones left out."""
        if not self.weights:
            return [q for q in self.queues if q not in self.paused] if self.paused else self.queues
        # Weighted random order without replacement (Efraimidis-Spirakis keys).
        keyed = sorted(((random.random() ** (1.0 / w), q) for q, w in zip(self.queues, self.weights)
                        if q not in self.paused), reverse=True)
        return [q for _, q in keyed]

    def _reconcile(self) -> None:
        """Run the jobs in our processing list that this worker does not run: moved by a fetch
        whose reply was lost, or put back there by a failover that lost their ack.

        Waiters still blocked in Redis could be moving jobs right now, so this waits until
        none is; after that every job in the list is either running here or a stray.
        """
        self.join_waiters(timeout=None)
        room, left = self.pool.free_count(), 0
        for queue in self.queues:
            # What we hold is read before the list: a job settled while the list is read is in
            # neither, or only in the copy of what we hold, never taken for a stray.
            held = Counter(self.holding(queue))
            strays = Counter(self.broker.processing(queue, self.worker_id))
            strays.subtract(held)
            found = list(strays.elements())
            ran = self._run_strays(queue, found, room)
            room, left = room - ran, left + len(found) - ran
        self._checked_once = True
        # Strays beyond the free slots stay in the list: the next check, once a slot is free, runs more.
        self._next_check = time.monotonic() + (0.0 if left else CHECK_EVERY)
        if time.monotonic() > self._unsure_until:
            self._unsure_until = 0.0

    def _run_strays(self, queue: str, found: list[bytes], room: int) -> int:
        """Run as many of these strays as the pool has room for (a failover can undo more acks
        than the pool holds); how many."""
        if not found:
            return 0
        now = found[:max(0, room)]
        log.warning("found %d jobs in this worker's processing list of queue %s that it does not run "
                    "(a fetch reply or an ack lost to a Redis fault); running %s", len(found), queue,
                    "them" if len(now) == len(found) else f"{len(now)} of them now, the rest as slots free up")
        if now:
            self.dispatch(queue, now, True)
        return len(now)

    def _fetch_failed(self, error: BrokerError) -> None:
        self.failed_at = time.monotonic()
        self._unsure_until = self.failed_at + self.block_timeout + 1.0
        self._checked_once = False
        self.on_error("fetch")
        self._outage.failed(error)
        gevent.sleep(0.1 + random.random() * 0.4)

    def waiters(self) -> list[gevent.Greenlet]:
        """The greenlets blocked in Redis on one queue each, right now."""
        return list(self._waiting.values())

    def join_waiters(self, timeout: float | None) -> None:
        gevent.joinall(self.waiters(), timeout=timeout)
