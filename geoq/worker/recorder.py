"""The worker's side of the job history: count every finished run in memory, add the counts to Redis
every history.flush_every seconds.

Counting is a middleware (after_run, buried), so it sees what the Prometheus metrics see, and
costs a few dict lookups and increments per job (about 5,600 instructions, some 3% of a no-op
job's cost in the worker: bench/README.md): no I/O on a job's path.
A loop of the worker's own (run) flushes the tally in one round trip: every flush_every seconds,
and right after each minute ends, so a minute is complete in Redis a moment after it ends. When Redis refuses or is away the tally is kept (bounded: geoq.history.Tally) and tried
again at the next flush; a flush never blocks or fails a job. A flush whose reply is lost may
have been added before the connection broke: its counts are then added again (counts may run
over by one flush, never under, while Redis is reachable).

The recorder outlives a worker's fenced restarts (it is built once per process, like the metrics),
so counts gathered before one are written after it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import gevent

from geoq.broker.history import HistoryBroker
from geoq.errors import BrokerError
from geoq.history import INDEX, Tally, hour_blocks
from geoq.job import Job
from geoq.middleware import Middleware, WorkerInfo
from geoq.outage import Outage
from geoq.outcome import CANCELLED, DEAD, RETRY, SUCCEEDED, UNRUN, Outcome

log = logging.getLogger(__name__)

UNKNOWN = "_unknown"   # the type of a job whose type could not be read (as the metrics call it)
BY_STATE = {SUCCEEDED: INDEX["succeeded"], RETRY: INDEX["retried"], DEAD: INDEX["dead"],
            CANCELLED: INDEX["cancelled"]}   # Outcome.state -> counter (Outcome.label, without its call)
MINUTE_LAG = 0.2       # seconds after a minute ends before its flush: runs ending on the mark are in


class Recorder(Middleware):
    """Counts runs into a Tally; `flush(broker)` adds them to Redis, `run(broker)` flushes forever."""

    def __init__(self, keep: float, flush_every: float, clock: Callable[[], float] = time.time) -> None:
        self.keep, self.flush_every = keep, flush_every
        self.tally = Tally()
        self._now = clock   # until a worker gives its Redis-synced clock
        self._offset = 0.0
        self._dropped_logged = 0
        self._sync()

    # -- counting: the middleware hooks (the hot path) --------------------------------------------

    def worker_started(self, worker: WorkerInfo) -> None:
        self._now = worker.now
        self._sync()

    def _sync(self) -> None:
        """Take the clock's offset from this host's time. A run's time is this host's time plus it,
        a C call and an addition rather than a call of the clock; it is taken again before each
        flush, and the Redis-synced clock moves by milliseconds between syncs, if at all."""
        self._offset = self._now() - time.time()

    def after_run(self, job: Job, outcome: Outcome) -> None:
        """One hook per job, not two: the wait is the run's start (its end less its duration, the
        middleware's before_run included) less the time the job could first start (a negative
        wait, from a producer's clock running ahead, counts as under a millisecond). Fields are read directly,
        not through Job's and Outcome's properties: this runs for every job."""
        index = BY_STATE.get(outcome.state)
        if index is None:   # interrupted: the job is back in its queue, the run does not count
            return
        now = time.time() + self._offset
        ready = job.enqueued_at if job.due_at is None else job.due_at
        waited = now - outcome.duration - ready if ready > 0 and outcome.reason not in UNRUN else None
        self.tally.count(job.queue, job.type or UNKNOWN, index, now, waited)

    def buried(self, queue: str, job_type: str | None) -> None:
        self.tally.ended(queue, job_type or UNKNOWN, "dead", self._now())

    # -- writing ------------------------------------------------------------------------------------

    def flush(self, broker: HistoryBroker) -> bool:
        """Add everything counted so far; True when all of it is in Redis. What Redis refused is
        kept for the next flush; a BrokerError (the round trip failed) is raised, the tally kept."""
        taken = self.tally.take()
        if not taken:
            return True
        blocks = hour_blocks(taken)
        try:
            added = broker.add(blocks, self.keep)
        except BaseException:   # a Redis error, or the stop cutting the flush short: nothing lost here
            self.tally.give_back(taken)
            raise
        refused = {(b.queue, b.hour) for b, ok in zip(blocks, added) if not ok}
        if refused:
            self.tally.give_back({k: t for k, t in taken.items() if (k[0], k[1] // 60) in refused})
        self._log_dropped()
        return not refused

    def run(self, broker: HistoryBroker) -> None:
        """Flush every flush_every seconds and just after each minute ends, until killed."""
        outage = Outage(log.log, "cannot write the job history (counts kept for the next try): %s",
                        "writing the job history again")
        while True:
            gevent.sleep(self.pause())
            try:
                if self.flush(broker):
                    outage.recovered()
                else:
                    outage.failed("redis refused part of it (maxmemory?)")
            except BrokerError as e:
                outage.failed(e)

    def pause(self) -> float:
        """Seconds until the next flush: flush_every, or less to land just after the minute ends."""
        self._sync()
        to_minute_end = 60.0 - self._now() % 60.0 + MINUTE_LAG
        return max(0.01, min(self.flush_every, to_minute_end))

    def _log_dropped(self) -> None:
        if self.tally.dropped > self._dropped_logged:
            log.error("job history: %d minutes of counts dropped, unwritten for too long (redis away?)",
                      self.tally.dropped - self._dropped_logged)
            self._dropped_logged = self.tally.dropped
