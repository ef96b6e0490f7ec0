"""Fleet-wide limits in the worker: admit fetched jobs, hold back the rest, give slots back.

- `admit` takes the jobs of one fetch whose route has limits and asks Redis for their permits,
  one script call per route, all routes in one round trip (geoq.broker.limits), before they
  are handed to the pool. (Asking from a greenlet of its own while the runs waited for their
  verdicts in their slots cost more: each run then blocked once and had to be woken.) A job
  held back is never run and takes no pool slot: it goes back to its queue's scheduled set,
  due when its rate permit, reserved for it, is due (or, for a concurrency slot, when the line of jobs already waiting
  for one says a slot should be free), by the settler's ordinary retry move with its
  envelope and run count unchanged, so it spends no attempt. Other jobs of the same fetch
  run at once, whatever their key or route: a slow host does not hold up the rest.
- A run that holds concurrency slots (leases) gives them back when it ends (`finished`),
  in batches written by one greenlet; the leases of runs still going on are renewed every
  heartbeat. A worker that dies stops renewing, and its leases expire `dead_after` plus a
  heartbeat after the last renewal: its slots come back by the time the reaper returns its jobs.
- `throttled`: on a route with `limits.adaptive`, a server's request to slow down
  (geoq.errors.Throttled) pauses the job's key for every worker and puts the job back,
  due at the pause's end, again without counting the run as an attempt.

A job held back is promoted when it falls due by this worker itself (one promote per queue
and 20 ms slot at most, for up to `Waker.MAX_SLOTS` slots), not at the scheduler's next pass
(every 0.1-0.3 s): permits that fall due while no held job is back to take them are lost beyond
the burst, and a host limited to 5/s would get fewer.

Routes without limits never reach this module: the worker checks `route.limit is None`.
If Redis fails while permits are asked for, the batch's limited jobs are held back for a
short while rather than run without a permit.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import time
from typing import Any, Callable, Protocol, Sequence

import gevent
from gevent.event import Event
from gevent.queue import Queue

from geoq import records
from geoq.broker.broker import RetryLater
from geoq.broker.limits import Ask, Lease, LimitBroker
from geoq.errors import BrokerError, LimitKeyError
from geoq.job import Job
from geoq.limits import LIMIT_LABELS, LimitSpec, burst_of, key_of, pause_for
from geoq.middleware import NO_EVENTS, Chain
from geoq.outcome import describe

log = logging.getLogger(__name__)

HOLD_ON_ERROR = 1.0     # seconds a limited job waits when its permit could not be asked for
RELEASE_BATCH = 1000    # leases given back per round trip at most
GRANTED = (0, 0.0)      # the verdict of an ask the limit script did not name: granted, to start now
SPARE_PERMITS = 2000    # permits a worker asks to keep, for a route rate far from binding (limit_take.lua)
SPARE_FOR = 0.1         # seconds spare permits may be spent: a start trails its permit by no more


class Fetched(Protocol):
    """A fetched job as the worker prepared it (geoq.worker.executor.Prepared)."""

    @property
    def queue(self) -> str: ...

    @property
    def envelope(self) -> bytes: ...

    @property
    def job(self) -> Job | None: ...

    @property
    def route(self) -> Any: ...


Settle = Callable[[str, Any], None]                 # the settler's put
Group = tuple[LimitSpec, list[Any], list[Ask]]      # one route's jobs of a fetch, and what they ask for
Reject = Callable[[Any, str], Any]                  # (prepared, error) -> the prepared job, to be buried


def _spare_wanted(spec: LimitSpec) -> int:
    """Spare permits to ask for: only for a route rate alone (no key, no slots, no pauses, which
    every job must ask about), a quarter of its burst at most."""
    if spec.rate is None or spec.key is not None or spec.leased or spec.adaptive:
        return 0
    return min(SPARE_PERMITS, burst_of(spec.rate) // 4)


class Waker:
    """Promotes a queue's due jobs at the times jobs this worker held back fall due.

    Wake times are kept as (20 ms slot, queue) pairs, MAX_SLOTS at most whatever the number of
    jobs held (200 s of slots of one queue); a wake that finds them all taken is left to the
    scheduler. One loop sleeps until the earliest slot.
    """

    SLOT = 0.02
    MAX_SLOTS = 10_000

    def __init__(self, promote: Callable[[str], int], events: Chain = NO_EVENTS) -> None:
        self.promote, self.events = promote, events
        self._slots: set[tuple[int, str]] = set()
        self._heap: list[tuple[int, str]] = []   # the same pairs, earliest first
        self._changed = Event()

    def at(self, queue: str, wait: float) -> None:
        """Promote `queue` once `wait` seconds have passed (rounded up to a slot)."""
        slot = (math.ceil((time.monotonic() + wait) / self.SLOT), queue)
        if slot in self._slots or len(self._slots) >= self.MAX_SLOTS:
            return
        self._slots.add(slot)
        heapq.heappush(self._heap, slot)
        if self._heap[0] == slot:
            self._changed.set()   # earlier than what the loop sleeps for

    def run(self) -> None:
        while True:
            self._changed.clear()
            if not self._heap:
                self._changed.wait()
                continue
            delay = self._heap[0][0] * self.SLOT - time.monotonic()
            if delay > 0:
                self._changed.wait(delay)
                continue
            slot = heapq.heappop(self._heap)
            self._slots.discard(slot)
            try:
                self.promote(slot[1])
            except BrokerError:  # the scheduler's own pass promotes them a little later
                self.events.redis_error("promote")


class Limiter:
    """One worker's side of the fleet-wide limits (see the module docstring)."""

    def __init__(self, broker: LimitBroker, worker_id: str, settle: Settle, *, lease_time: float,
                 renew_every: float, capacity: int, promote: Callable[[str], int],
                 events: Chain = NO_EVENTS) -> None:
        self.broker, self.worker_id, self.settle = broker, worker_id, settle
        self.waker = Waker(promote, events)
        self.lease_ms = max(1000, round(lease_time * 1000))
        self.renew_every = renew_every
        self.events = events
        self._leases: dict[int, tuple[str, Lease, float]] = {}   # id(prepared) -> route, lease, start
        self._starts: dict[int, float] = {}   # id(prepared) -> seconds its permit says to wait before starting
        self._spare: dict[str, tuple[int, float]] = {}   # route -> spare permits, monotonic time they lapse
        self._ended: Queue = Queue(maxsize=capacity)              # bounded: a full queue blocks the run's end
        self._serial = itertools.count()
        self._pending_release = 0   # ended runs whose slots are not yet given back

    # -- admission ---------------------------------------------------------------------------

    def admit(self, queue: str, jobs: Sequence[Fetched], reject: Reject) -> list[Any]:
        """The jobs that may run now, in order: those without limits, those granted their
        permits, and those whose key cannot be read (replaced by their burial, `reject`). The
        rest are handed to the settler to wait in the scheduled set; they take no pool slot."""
        run: list[Any] = []
        asking: dict[str, tuple[LimitSpec, list[Any], list[str | None]]] = {}
        for p in jobs:
            spec = p.route.limit if p.route is not None else None
            if spec is None or p.job is None:
                run.append(p)
                continue
            try:
                key = key_of(spec.key, p.job.payload) if spec.key is not None else None
            except LimitKeyError as e:
                run.append(reject(p, str(e)))
                continue
            group = asking.get(spec.route) or asking.setdefault(spec.route, (spec, [], []))
            group[1].append(p)
            group[2].append(key)
        groups: list[Group] = []
        for spec, waiting, values in asking.values():
            if self._spent(spec, len(waiting)):
                run += waiting   # spare permits taken earlier: no round trip
            else:
                groups.append((spec, waiting, self._asks(spec, waiting, values)))
        if groups:
            run += self._ask(queue, groups)
        return run

    def _asks(self, spec: LimitSpec, jobs: list[Any], values: list[str | None]) -> list[Ask]:
        if not spec.leased:
            return [Ask(value, "", p.job.id) for p, value in zip(jobs, values)]
        return [Ask(value, f"{self.worker_id}|{p.job.id}|{next(self._serial)}", p.job.id)
                for p, value in zip(jobs, values)]

    def _spent(self, spec: LimitSpec, n: int) -> bool:
        """Take n of the route's spare permits, if it has that many still good."""
        count, lapse = self._spare.get(spec.route, (0, 0.0))
        if count < n or time.monotonic() > lapse:
            return False
        self._spare[spec.route] = (count - n, lapse)
        return True

    def _ask(self, queue: str, groups: list[Group]) -> list[Any]:
        """The jobs granted; the others go back to wait (a little while, when Redis could not be asked)."""
        try:
            replies = self.broker.take([(spec, asks, _spare_wanted(spec)) for spec, _, asks in groups],
                                       self.lease_ms)
        except BrokerError as e:
            self.events.redis_error("limits")
            log.warning("cannot ask for limit permits, holding %d jobs back for about %gs: %s",
                        sum(len(js) for _, js, _ in groups), HOLD_ON_ERROR, e)
            for _, jobs, _ in groups:
                for p in jobs:
                    self._hold(queue, p, HOLD_ON_ERROR * (0.5 + random.random()))
            return []
        granted: list[Any] = []
        for group, (spare, named) in zip(groups, replies):
            if spare:
                self._spare[group[0].route] = (spare, time.monotonic() + SPARE_FOR)
            granted += self._sort(queue, group, named)
        return granted

    def _sort(self, queue: str, group: Group, named: dict[int, tuple[int, float]]) -> list[Any]:
        """One route's jobs granted (their leases and start times noted); the rest held back."""
        spec, jobs, asks = group
        if not named and not spec.leased:   # every job granted, none to lease: the common case
            return jobs
        granted, now = [], time.monotonic()
        for i, (p, ask) in enumerate(zip(jobs, asks)):
            code, wait = named.get(i, GRANTED)
            if code != 0:
                self.events.limited(spec.route, LIMIT_LABELS.get(code, "rate"))
                self._hold(queue, p, wait)
                continue
            if wait > 0:
                self._starts[id(p)] = wait
            if spec.leased:
                self._leases[id(p)] = (spec.route, Lease(ask.key, ask.member), now)
            granted.append(p)
        return granted

    def _hold(self, queue: str, p: Fetched, wait: float) -> None:
        """Back to the scheduled set, due in `wait` seconds: same envelope, same run count."""
        job = p.job
        assert job is not None
        self.settle(queue, RetryLater(p.envelope, p.envelope, wait, job.id, job.attempt - 1,
                                      records.state_detail(job.last_error)))
        self.waker.at(queue, wait)

    # -- adaptive pauses -----------------------------------------------------------------------

    def throttled(self, p: Fetched, error: BaseException) -> RetryLater | None:
        """For a run an adaptive route's server asked to slow down: pause its key for every
        worker, and the move that puts the job back until then (its run not counted). None
        when the error is no such signal: the run failed like any other."""
        job, spec = p.job, p.route.limit if p.route is not None else None
        seconds = pause_for(spec, error) if spec is not None else None
        if seconds is None or job is None or spec is None:
            return None
        try:
            key = key_of(spec.key, job.payload) if spec.key is not None else None
        except LimitKeyError:
            return None
        try:
            seconds = self.broker.pause(spec, key, seconds)
        except BrokerError as e:  # this job still waits; the others find out from their own servers
            self.events.redis_error("limits")
            log.warning("cannot pause a key of route %s for %gs (job %s waits anyway): %s", spec.route,
                        seconds, job.id, e)
        log.info("job %s of %s: the server asked to slow down; its key paused for %gs: %s", job.id, job.type,
                 seconds, describe(error))
        self.events.limited(spec.route, "paused_key")
        self.waker.at(p.queue, seconds)
        return RetryLater(p.envelope, p.envelope, seconds, job.id, job.attempt - 1,
                          records.state_detail(describe(error)))

    # -- runs ------------------------------------------------------------------------------------

    def runner(self, execute: Callable[[Any], None]) -> Callable[[Any], None]:
        """What the pool runs for each job of a limited worker: `execute(p)`, after the wait its
        permit names (a fraction of a second at most, in its pool slot: see limit_take.lua's
        start schedule), giving back its concurrency slots however the run ends."""
        def run(p: Any) -> None:
            if not self._leases and not self._starts:   # no wait, nothing to give back: the common case
                execute(p)
                return
            try:
                wait = self._starts.pop(id(p), 0.0)
                if wait > 0:
                    gevent.sleep(wait)
                execute(p)
            finally:
                self.finished(p)
        return run

    # -- leases ----------------------------------------------------------------------------------

    def finished(self, p: object) -> None:
        """A run ended (however): its concurrency slots, if it held any, are given back soon."""
        held = self._leases.pop(id(p), None)
        if held is not None:
            route, lease, started = held
            self._pending_release += 1
            self._ended.put((route, lease, time.monotonic() - started))

    def run_releases(self) -> None:
        """Give back ended runs' slots, in batches, one round trip each (a loop of its own)."""
        while True:
            batch = [self._ended.get()]
            while len(batch) < RELEASE_BATCH and not self._ended.empty():
                batch.append(self._ended.get_nowait())
            try:
                self._release(batch)
            finally:
                self._pending_release -= len(batch)

    def _release(self, batch: list[tuple[str, Lease, float]]) -> None:
        """Write until Redis takes it, or until the leases have expired by themselves anyway."""
        by_route: dict[str, list[Lease]] = {}
        run_ms: dict[str, float] = {}
        for route, lease, seconds in batch:
            by_route.setdefault(route, []).append(lease)
            run_ms[route] = run_ms.get(route, 0.0) + seconds * 1000
        give_up, pause = time.monotonic() + self.lease_ms / 1000, 0.05
        while True:
            try:
                self.broker.release(by_route, run_ms)
                return
            except BrokerError as e:
                self.events.redis_error("limits")
                if time.monotonic() > give_up:
                    log.warning("could not give back %d concurrency slots; they expire by themselves: %s",
                                len(batch), e)
                    return
            gevent.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 5.0)

    def run_renewals(self) -> None:
        """Extend the leases of the runs going on, every `renew_every` seconds (a loop of its own)."""
        while True:
            gevent.sleep(self.renew_every)
            by_route: dict[str, list[Lease]] = {}
            for route, lease, _ in list(self._leases.values()):
                by_route.setdefault(route, []).append(lease)
            try:
                self.broker.renew(by_route, self.lease_ms)
            except BrokerError as e:
                self.events.redis_error("limits")
                log.warning("cannot renew %d concurrency leases: %s", len(self._leases), e)

    def flush(self, timeout: float) -> bool:
        """Wait (up to `timeout`) until the slots of every ended run are given back; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._pending_release > 0:
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.01)
        return True
