"""Batches job outcomes and writes them to Redis, in order, one round trip per flush.

Outcomes wait in a bounded queue: when Redis is away the queue fills, job
greenlets block on put() while holding their pool slots, and the fetcher
stops taking work. Nothing is dropped; a crash before a flush only means the
jobs are still in the processing list and will be delivered again.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any, Callable, Sequence

import gevent
from gevent.event import Event
from gevent.queue import Queue

from geoq.broker.broker import Ack, Broker, Bury, Cancelled, Retention, RetryLater, Settlement
from geoq.errors import BrokerError
from geoq.middleware import NO_EVENTS, Chain
from geoq.outage import Outage

log = logging.getLogger(__name__)

Outcome = Ack | RetryLater | Bury | Cancelled


def _unheld(written: Sequence[tuple[str, bytes]]) -> None:
    """A settler nobody tracks held envelopes for (tests, tools): nothing to release."""


class Settler:
    """The single writer of outcomes for one worker."""

    def __init__(self, broker: Broker, worker_id: str, retention: Retention, *, capacity: int,
                 max_flush: int = 1000, on_written: Callable[[Sequence[tuple[str, bytes]]], None] = _unheld,
                 events: Chain = NO_EVENTS) -> None:
        self.broker, self.worker_id, self.retention = broker, worker_id, retention
        self.queue: Queue = Queue(maxsize=capacity)
        self.max_flush = max_flush
        self.on_written = on_written   # the worker's: these envelopes are no longer held
        self.on_error, self.on_fenced = events.redis_error, events.fenced
        self._idle = Event()
        self._idle.set()
        self.unwritten: Counter[str] = Counter()  # outcomes handed over and not yet written, per queue
        self._outage = Outage(log.log, "cannot write job outcomes, holding them and retrying: %s",
                              "job outcomes written again")

    def put(self, queue: str, item: Outcome) -> None:
        """Hand over one outcome; blocks while the buffer is full (Redis slow or away)."""
        self._idle.clear()
        self.queue.put((queue, item))
        self.unwritten[queue] += 1

    def mark(self, queue: str, marks: list[tuple[str, str]]) -> None:
        """Record that jobs started; written before any later outcome of the same jobs."""
        if marks:
            self._idle.clear()
            self.queue.put((queue, marks))

    def run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.max_flush and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._write(_group(batch))
            written = [(queue, item.envelope) for queue, item in batch if not isinstance(item, list)]
            self.unwritten.subtract(Counter(queue for queue, _ in written))  # counted in C, then per queue
            self.on_written(written)
            if self.queue.empty():
                self._idle.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every outcome handed over so far is written; False on timeout."""
        return bool(self._idle.wait(timeout))

    def _write(self, settlements: list[Settlement]) -> None:
        """Write until Redis has taken every part; each move checks its job is still ours, so replays are safe."""
        pause, replay = 0.05, False
        while settlements:
            try:
                result = self.broker.settle(self.worker_id, settlements, self.retention)
            except BrokerError as e:
                error: Exception | None = e
                replay = True  # the lost attempt may have been applied: "not found" then means "done"
            else:
                self._report_fenced(result.fenced, replay)
                settlements, error = result.refused, result.error
            if not settlements:
                break
            self.on_error("settle")
            self._outage.failed(error)
            gevent.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 5.0)
        self._outage.recovered()

    def _report_fenced(self, fenced: int, replay: bool) -> None:
        if not fenced:
            return
        if replay:
            log.info("%d outcomes were already written by an attempt whose reply was lost", fenced)
            return
        self.on_fenced(fenced)
        log.warning("%d outcomes found their job no longer held by this worker (reaped or handed back "
                    "meanwhile); left unchanged", fenced)


def _group(batch: list[tuple[str, Any]]) -> list[Settlement]:
    by_queue: dict[str, dict[str, list[Any]]] = {}
    for queue, item in batch:
        parts = by_queue.setdefault(queue, {"marks": [], "acks": [], "retries": [], "burials": [], "cancels": []})
        if isinstance(item, list):
            parts["marks"] += item
        elif isinstance(item, Ack):
            parts["acks"].append(item)
        elif isinstance(item, RetryLater):
            parts["retries"].append(item)
        elif isinstance(item, Cancelled):
            parts["cancels"].append(item)
        else:
            parts["burials"].append(item)
    return [Settlement(queue, **parts) for queue, parts in by_queue.items()]
