"""Batches job outcomes and writes them to Redis, in order, one round trip per flush.

Outcomes wait in a bounded queue: when Redis is away the queue fills, job
greenlets block on put() while holding their pool slots, and the fetcher
stops taking work. Nothing is dropped; a crash before a flush only means the
jobs are still in the processing list and will be delivered again.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable

import gevent
from gevent.queue import Queue

from geoq.broker.broker import Ack, Broker, Bury, Retention, RetryLater, Settlement
from geoq.errors import BrokerError

log = logging.getLogger(__name__)

MARK = "mark"


class Settler:
    """The single writer of outcomes for one worker."""

    def __init__(self, broker: Broker, worker_id: str, retention: Retention, *, capacity: int,
                 max_flush: int = 1000, on_error: Callable[[str], None] | None = None,
                 on_fenced: Callable[[int], None] | None = None) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.retention = retention
        self.queue: Queue = Queue(maxsize=capacity)
        self.max_flush = max_flush
        self.on_error = on_error or (lambda op: None)
        self.on_fenced = on_fenced or (lambda n: None)
        self._busy = False

    def put(self, queue: str, item: Ack | RetryLater | Bury) -> None:
        """Hand over one outcome; blocks while the buffer is full (Redis slow or away)."""
        self.queue.put((queue, item))

    def mark(self, queue: str, marks: list[tuple[str, str]]) -> None:
        """Record that jobs started; written before any later outcome of the same jobs."""
        if marks:
            self.queue.put((queue, (MARK, marks)))

    def idle(self) -> bool:
        return self.queue.empty() and not self._busy

    def run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.max_flush and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._busy = True
            try:
                self._write(_group(batch))
            finally:
                self._busy = False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every outcome handed over so far is written; False on timeout."""
        with gevent.Timeout(timeout, False):
            while not self.idle():
                gevent.sleep(0.005)
            return True
        return False

    def _write(self, settlements: list[Settlement]) -> None:
        """Write until Redis takes it; replaying is safe since every move checks its job is still ours."""
        pause, failing = 0.05, False
        while True:
            try:
                fenced = self.broker.settle(self.worker_id, settlements, self.retention)
            except BrokerError as e:
                self.on_error("settle")
                if not failing:
                    log.error("cannot write job outcomes, holding them and retrying: %s", e)
                    failing = True
                gevent.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 5.0)
                continue
            if failing:
                log.warning("job outcomes written again after Redis came back")
            if fenced:
                self.on_fenced(fenced)
                log.warning("%d outcomes found their job no longer held by this worker; left unchanged", fenced)
            return


def _group(batch: list[tuple[str, Any]]) -> list[Settlement]:
    by_queue: dict[str, dict[str, list[Any]]] = {}
    for queue, item in batch:
        parts = by_queue.setdefault(queue, {"marks": [], "acks": [], "retries": [], "burials": []})
        if isinstance(item, tuple) and item[0] == MARK:
            parts["marks"] += item[1]
        elif isinstance(item, Ack):
            parts["acks"].append(item)
        elif isinstance(item, RetryLater):
            parts["retries"].append(item)
        else:
            parts["burials"].append(item)
    return [Settlement(queue, **parts) for queue, parts in by_queue.items()]
