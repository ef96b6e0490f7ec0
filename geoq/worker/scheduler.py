"""Promotes due delayed and retrying jobs from each queue's scheduled set to its ready list.

Every worker runs one; the promote script makes many of them at once safe.
Due times are Redis server time, so workers' clocks do not matter. A due job whose expiry
has passed is buried instead (reason "expired"), and counted dead through the middleware's
`buried` hook, with its done record kept for `keep` seconds.
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
                 keep: float = 0.0, events: Chain = NO_EVENTS) -> None:
        self.broker, self.queues = broker, list(queues)
        self.interval, self.limit, self.keep = interval, limit, keep
        self.on_error, self.on_buried = events.redis_error, events.buried

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
            promotion = self.broker.promote_due(queue, self.limit, self.keep)
            taken = promotion.moved + len(promotion.expired)
            total += taken
            for job_id, job_type, _ in promotion.expired:
                log.info("job %s (%s) of queue %s expired before it could run: dead", job_id, job_type, queue)
                self.on_buried(queue, job_type)
            if taken < self.limit:
                return total
