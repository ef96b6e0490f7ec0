"""geoq_queue_depth{queue,state}: read from Redis at scrape time, within a short deadline.

A scrape must answer even when Redis does not: on an error or past the
deadline the gauge has no samples for that scrape (a stale depth would lie),
the failure is counted as geoq_redis_errors_total{op="scrape"}, and the rest
of the scrape is served as usual.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Sequence

import gevent
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from geoq.broker.broker import Broker
from geoq.broker.inspect import PLACES, queue_depths
from geoq.errors import BrokerError
from geoq.outage import Outage

log = logging.getLogger(__name__)

NAME = "geoq_queue_depth"
HELP = "Jobs in each place of a queue (ready, scheduled, processing, dead), read from Redis at scrape time"


class DepthCollector(Collector):
    """Collects geoq_queue_depth for `queues` through `broker`, giving up after `timeout` seconds.

    With no broker (not yet given one) the family is reported without samples.
    """

    def __init__(self, broker: Broker | None, queues: Sequence[str], *, timeout: float = 1.0,
                 on_error: Callable[[str], None]) -> None:
        self.broker = broker
        self.queues = list(queues)
        self.timeout = timeout
        self.on_error = on_error   # counts a failed scrape
        # One line per outage, not one per scrape.
        self._outage = Outage(log.log, "cannot read queue depths for a scrape: %s", "queue depths readable again")

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration calls this instead of collect(), so registering touches no Redis.
        yield GaugeMetricFamily(NAME, HELP, labels=["queue", "state"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(NAME, HELP, labels=["queue", "state"])
        depths = self._read()
        if depths is not None:
            for queue in self.queues:
                for place in PLACES:
                    family.add_metric([queue, place], depths[queue][place])
        yield family

    def _read(self) -> dict[str, dict[str, int]] | None:
        broker = self.broker
        if broker is None:
            return None
        timer = gevent.Timeout(self.timeout)
        timer.start()
        try:
            depths = queue_depths(broker, self.queues)
        except gevent.Timeout as t:
            if t is not timer:
                raise
            self._failed(f"no reply within {self.timeout:g}s")
            return None
        except BrokerError as e:
            self._failed(str(e))
            return None
        finally:
            timer.close()
        self._outage.recovered()
        return depths

    def _failed(self, why: str) -> None:
        self.on_error("scrape")
        self._outage.failed(why)
