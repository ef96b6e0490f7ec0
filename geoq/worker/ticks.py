"""Enqueues the jobs of the config's schedules: one loop per worker, no leader (geoq.ticker).

Every worker wakes just after each tick and tries to claim it; tick.lua lets one through.
Ticks are judged by Redis's clock (the worker's RedisClock), so a worker whose host clock
is off neither fires early nor late.
"""

from __future__ import annotations

import logging

import gevent

from geoq.errors import BrokerError, GeoqError
from geoq.middleware import NO_EVENTS, Chain
from geoq.outage import Outage
from geoq.ticker import Ticker

log = logging.getLogger(__name__)

LONGEST_SLEEP = 1.0   # seconds: a clock resync or a long stall is noticed within this
PAST_TICK = 0.005     # wake this long after a tick, so that every worker's clock has reached it


class TickLoop:
    def __init__(self, ticker: Ticker, events: Chain = NO_EVENTS) -> None:
        self.ticker = ticker
        self.on_error = events.redis_error

    def run(self) -> None:
        outage = Outage(log.log, "cannot enqueue scheduled jobs: %s", "enqueuing scheduled jobs again")
        while True:
            try:
                self.ticker.run_due()
            except BrokerError as e:
                self.on_error("tick")
                outage.failed(e)
            except GeoqError as e:  # a payload over max_payload, a middleware's bad job: that tick is lost
                log.error("cannot enqueue a scheduled job: %s", e)
            else:
                outage.recovered()
            gevent.sleep(self.pause())

    def pause(self) -> float:
        """Until just after the next tick, at most LONGEST_SLEEP."""
        now = self.ticker.clock()
        return max(0.0, min(self.ticker.next_at(now) - now, LONGEST_SLEEP)) + PAST_TICK
