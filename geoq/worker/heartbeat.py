"""Registers the worker and proves, on a schedule, that it is alive."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Callable, Sequence

import gevent

from geoq.broker import keys
from geoq.broker.broker import Broker
from geoq.broker.errors import redis_errors
from geoq.errors import BrokerError

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{os.urandom(3).hex()}"


class Heartbeat:
    def __init__(self, broker: Broker, worker_id: str, queues: Sequence[str], concurrency: int, *,
                 interval: float, dead_after: float, in_flight: Callable[[], int],
                 on_error: Callable[[str], None] | None = None) -> None:
        self.broker, self.worker_id, self.queues = broker, worker_id, list(queues)
        self.concurrency, self.interval, self.dead_after = concurrency, interval, dead_after
        self.in_flight = in_flight
        self.on_error = on_error or (lambda op: None)
        self.started_at = time.time()

    def register(self) -> None:
        self.broker.register_queues(self.worker_id, self.queues)
        self.beat()

    def beat(self) -> None:
        info = json.dumps({"id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "queues": self.queues, "concurrency": self.concurrency,
                           "in_flight": self.in_flight(), "started_at": round(self.started_at, 3),
                           "beat_at": round(time.time(), 3)}, separators=(",", ":"))
        pipe = self.broker.client.pipeline(transaction=False)
        pipe.hset(keys.WORKERS, self.worker_id, info)
        pipe.set(keys.heartbeat(self.worker_id), info, px=int(self.dead_after * 1000))
        with redis_errors("heartbeat"):
            pipe.execute()

    def deregister(self) -> None:
        pipe = self.broker.client.pipeline(transaction=False)
        pipe.hdel(keys.WORKERS, self.worker_id)
        pipe.delete(keys.heartbeat(self.worker_id))
        for queue in self.queues:
            pipe.srem(keys.queue_keys(queue).workers, self.worker_id)
        with redis_errors("deregister"):
            pipe.execute()

    def run(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.beat()
            except BrokerError as e:
                self.on_error("heartbeat")
                log.error("heartbeat failed: %s", e)
