"""Promotes due delayed and retrying jobs from each queue's scheduled set to its ready list.

Every worker runs one; the promote script makes many of them at once safe.
Due times are Redis server time, so workers' clocks do not matter.
"""

from __future__ import annotations

import logging
import random
from typing import Callable, Sequence

import gevent

from geoq.broker.broker import Broker
from geoq.errors import BrokerError
from geoq.middleware import NO_EVENTS, Chain
from geoq.outage import Outage

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, broker: Broker, queues: Sequence[str], *, interval: float = 0.2, limit: int = 1000,
                 events: Chain = NO_EVENTS) -> None:
        self.broker, self.queues = broker, list(queues)
        self.interval, self.limit = interval, limit
        self.on_error = events.redis_error

    def run(self) -> None:
        outage = Outage(log.log, "cannot promote scheduled jobs: %s", "promoting scheduled jobs again")
        while True:
            try:
                for queue in self.queues:
                    self.promote_all(queue)
            except BrokerError as e:
                self.on_error("promote")
                outage.failed(e)
            else:
                outage.recovered()
            # Jittered so that many workers do not promote in lockstep.
            gevent.sleep(self.interval * (0.5 + random.random()))

    def promote_all(self, queue: str) -> int:
        """Promote in bounded steps until no due job is left; the number moved."""
        total = 0
        while True:
            moved = self.broker.promote(queue, self.limit)
            total += moved
            if moved < self.limit:
                return total
