"""Interrupts the runs here whose jobs were cancelled (Client.cancel), wherever the cancel came from.

A cancel of a running job is a request in its queue's cancelling set (cancel.lua). This
loop reads the sets of this worker's queues about twice a second, in one round trip for
all of them and only while a handler runs here, and asks the executor to interrupt each
requested job it runs; the run then settles `cancelled` (cancelled.lua), never retried. A
run that ends some other way first keeps its own outcome (the request ages out of the set).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import gevent

from geoq.broker.broker import Broker
from geoq.errors import BrokerError
from geoq.middleware import NO_EVENTS, Chain
from geoq.outage import Outage

log = logging.getLogger(__name__)

INTERVAL = 0.5  # seconds between reads: a cancelled run is interrupted within a second, plus a round trip


class Canceller:
    """`running()` says whether any handler runs here; `cancel(id)` interrupts one (True if it ran here)."""

    def __init__(self, broker: Broker, queues: Sequence[str], running: Callable[[], bool],
                 cancel: Callable[[str], bool], *, interval: float = INTERVAL, events: Chain = NO_EVENTS) -> None:
        self.broker, self.queues = broker, list(queues)
        self.running, self.cancel = running, cancel
        self.interval = interval
        self.on_error = events.redis_error
        self._outage = Outage(log.log, "cannot read cancel requests: %s", "reading cancel requests again")

    def run(self) -> None:
        while True:
            gevent.sleep(self.interval)
            if not self.running():
                continue  # nothing to interrupt: no read
            try:
                requested = self.broker.cancel_requests(self.queues)
            except BrokerError as e:
                self.on_error("cancels")
                self._outage.failed(e)
                continue
            self._outage.recovered()
            self.interrupt(requested)

    def interrupt(self, requested: set[str]) -> int:
        """Interrupt each requested job that runs here; how many."""
        hit = [job_id for job_id in requested if self.cancel(job_id)]
        for job_id in hit:
            log.info("job %s was cancelled: interrupting its run", job_id)
        return len(hit)
