"""Finds workers that stopped proving they are alive and returns their jobs to their queues.

Every worker runs a reaper; one lock lets one act at a time, and its holder looks at
every queue any worker ever registered for, not only its own, so that a dead
worker's jobs come back whatever queues the living serve. A worker counts as
dead only after this reaper has seen its heartbeat missing for a grace period
longer than the heartbeat interval: after a Redis restart every heartbeat key
may have expired while live workers simply have not beaten again yet.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, Sequence

import gevent

from geoq.broker.broker import Retention
from geoq.broker.liveness import Reaped, Registry, Survey
from geoq.errors import BrokerError
from geoq.middleware import NO_EVENTS, Chain

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, registry: Registry, worker_id: str, queues: Sequence[str], *, interval: float,
                 grace: float, max_deliveries: int, retention: Retention,
                 events: Chain = NO_EVENTS) -> None:
        self.registry, self.worker_id, self.queues = registry, worker_id, list(queues)
        self.interval, self.grace = interval, grace
        self.max_deliveries, self.retention = max_deliveries, retention
        self.on_reaped, self.on_buried, self.on_error = events.reaped, events.buried, events.redis_error
        self._silent_since: dict[str, float] = {}

    def run(self) -> None:
        while True:
            gevent.sleep(self.interval * (0.5 + random.random()))
            try:
                self.pass_once()
            except BrokerError as e:
                self.on_error("reaper")
                self._silent_since.clear()  # what we saw before the error proves nothing now
                log.debug("reaper pass failed: %s", e)

    def pass_once(self) -> int:
        """One look at every queue any worker registered for; the number of jobs returned or dead-lettered.

        The lock holder covers every queue, not only its own: a queue that no live worker
        serves still gets its orphans back. A dead worker is forgotten only once none of
        its processing lists holds a job (a pass that could not finish leaves it for the next).
        """
        if not self._locked():
            return 0
        survey = self.registry.survey(self.queues)
        moved = 0
        for worker_id in self._dead_workers(survey):
            if not self._locked():  # a long pass outlived the lock: another reaper carries on
                break
            moved += self._reap_worker(worker_id, survey.queues_of(worker_id))
        return moved

    def _locked(self) -> bool:
        if self.registry.try_lock(self.worker_id, ttl=self.interval * 3):
            return True
        self._silent_since.clear()  # we stop watching: what we saw would be stale when we start again
        return False

    def _dead_workers(self, survey: Survey) -> list[str]:
        """The workers this reaper has seen silent for longer than the grace (never itself)."""
        now = time.monotonic()
        silent = set(self.registry.silent([w for w in survey.workers() if w != self.worker_id]))
        for worker_id in list(self._silent_since):
            if worker_id not in silent:
                del self._silent_since[worker_id]
        for worker_id in silent:
            self._silent_since.setdefault(worker_id, now)
        return sorted(w for w in silent if now - self._silent_since[w] >= self.grace)

    def _reap_worker(self, worker_id: str, queues: Sequence[str]) -> int:
        """Reap each of the dead worker's queues; forget it once no processing list of it holds a job."""
        reaped = [self._reap(worker_id, queue) for queue in queues]
        if all(r.left == 0 for r in reaped):
            self.registry.forget(worker_id)
            self._silent_since.pop(worker_id, None)
        return sum(r.returned + len(r.buried) for r in reaped)

    def _reap(self, worker_id: str, queue: str) -> Reaped:
        reaped = self.registry.reap(queue, worker_id, self.max_deliveries, self.retention)
        returned, buried = reaped.returned, len(reaped.buried)
        if returned or buried:
            log.warning("worker %s is dead: %d jobs of queue %s returned to the queue, %d dead-lettered "
                        "after %d deliveries", worker_id, returned, queue, buried, self.max_deliveries)
        self.on_reaped(returned + buried)
        for job_type in reaped.buried:  # a run ended by its worker's death, for the last time: dead
            self.on_buried(queue, job_type or None)
        return reaped
