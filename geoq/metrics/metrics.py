"""Every metric of the worker, in a registry of its own (never prometheus_client's global one).

Metrics is a middleware (geoq.middleware): the worker knows nothing of it, and it
learns everything it counts through the hooks every middleware can override.

Label values are bounded by the config: a job type that is not a configured
route and a queue the config does not name are both counted as ``_unknown``,
so a producer writing junk cannot grow the number of series. Redis operation
names come from geoq's own code, never from data.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from geoq.config import Config
from geoq.job import Job
from geoq.metrics.depth import DepthCollector
from geoq.metrics.tallies import Buckets, Count, CounterFamily, HistogramFamily
from geoq.middleware import HOOKS, Middleware, WorkerInfo
from geoq.outcome import DEAD, INTERRUPTED, UNRUN, Outcome, label_of

if TYPE_CHECKING:
    from geoq.broker.broker import Broker

log = logging.getLogger(__name__)

UNKNOWN = "_unknown"
# Outcome.label of every run counted (an interrupted one is not)
OUTCOMES = ("succeeded", "retried", "dead", "cancelled")
# Operations the worker reports Redis errors under; pre-set to 0 so rate() works from the first scrape.
REDIS_OPS = ("fetch", "settle", "promote", "heartbeat", "scrape", "ping", "limits")
LIMITS = ("rate", "concurrency", "key_rate", "key_concurrency", "paused_key")   # geoq_limited_total's limit label

# I/O jobs: milliseconds for a cached API call up to minutes for a slow crawl or report.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
SERIES_CACHED = 4096  # (type, queue, outcome) triples whose series are remembered; beyond, looked up each time


def _nothing_in_flight() -> int:
    return 0


K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    """value, kept under key unless the cache is full (names from a bad producer must not grow it)."""
    if len(cache) < SERIES_CACHED:
        cache[key] = value
    return value


class Metrics(Middleware):
    """The worker's metrics. `routes` maps each configured job type to its route's queue.

    `in_flight` is read at scrape time; `pool_size` is the greenlet pool's bound.
    worker_started gives both (and Redis's clock, for wait times) from each worker it serves.
    """

    def __init__(self, routes: Mapping[str, str], queues: Iterable[str], *,
                 in_flight: Callable[[], int] | None = None, pool_size: int = 0,
                 limited_routes: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.types = frozenset(routes)
        self.queues = tuple(dict.fromkeys([*queues, *routes.values()]))
        self._known_queues = frozenset(self.queues)
        self._in_flight: Callable[[], int] = in_flight or _nothing_in_flight
        self._now: Callable[[], float] = time.time   # until a worker gives its Redis-synced clock
        self._counts: dict[tuple[str, str, str], Count] = {}
        self._durations: dict[tuple[str, str], Buckets] = {}
        self._waits: dict[str, Buckets] = {}
        # Depths first: a scrape's own Redis error is then counted before the error counter is read.
        self.depth = DepthCollector(None, self.queues, on_error=self.redis_error)
        self.registry.register(self.depth)
        self._declare()
        self.pool_size.set(pool_size)
        self._preset(routes)
        for route in limited_routes:
            for limit in LIMITS:
                self.limited_jobs.labels(route, limit)

    @classmethod
    def from_config(cls, config: Config, *, in_flight: Callable[[], int] | None = None,
                    pool_size: int | None = None) -> "Metrics":
        routes = {name: route.queue for name, route in config.routes.items()}
        size = config.worker.concurrency if pool_size is None else pool_size
        limited = [name for name, route in config.routes.items() if route.limits.any]
        return cls(routes, config.worker.queues, in_flight=in_flight, pool_size=size, limited_routes=limited)

    def _declare(self) -> None:
        r = self.registry
        # Updated for every job: lock-free families (see tallies.py), with prometheus_client's exposition.
        self.jobs = CounterFamily("geoq_jobs", "Finished runs, by outcome: succeeded, retried or dead",
                                  ["type", "queue", "outcome"])
        self.duration = HistogramFamily("geoq_job_duration_seconds", "Handler run time", ["type", "queue"],
                                        buckets=DURATION_BUCKETS)
        self.wait = HistogramFamily("geoq_job_wait_seconds", "Time from enqueue (or the due time of a delayed or retried run) to its start",
                                    ["queue"], buckets=WAIT_BUCKETS)
        for family in (self.jobs, self.duration, self.wait):
            r.register(family)
        self.in_flight = Gauge("geoq_jobs_in_flight", "Jobs running in this worker now", registry=r)
        self.in_flight.set_function(lambda: self._in_flight())
        self.pool_size = Gauge("geoq_pool_size", "Greenlet pool size: the bound on jobs in flight", registry=r)
        self.fetch_batch = HistogramFamily("geoq_fetch_batch_size", "Jobs moved per fetch round trip",
                                           buckets=BATCH_BUCKETS)
        r.register(self.fetch_batch)
        self.redis_errors = Counter("geoq_redis_errors", "Redis operations that failed, by operation",
                                    ["op"], registry=r)
        self.hub_blocked = Counter("geoq_hub_blocked_seconds", "Time the gevent hub was blocked by one greenlet",
                                   registry=r)
        self.reaped_jobs = Counter("geoq_reaped_jobs", "Jobs this worker returned from dead workers to their queues",
                              registry=r)
        self.fenced_outcomes = Counter("geoq_fenced_outcomes", "Outcomes dropped because the job was no longer this "
                              "worker's (reaped or handed back meanwhile)", registry=r)
        self.middleware_errors = Counter("geoq_middleware_errors", "Middleware hooks that raised (ignored), by hook",
                                         ["hook"], registry=r)
        # Key values are never labels: thousands of hosts or accounts would be thousands of series.
        self.limited_jobs = Counter("geoq_limited", "Jobs held back by a route's limit, or paused with their key "
                                    "(limit: rate, concurrency, key_rate, key_concurrency, paused_key)",
                                    ["route", "limit"], registry=r)

    def _preset(self, routes: Mapping[str, str]) -> None:
        """Create the expected series at 0, so the first increment shows up in rate() and increase()."""
        for job_type, queue in routes.items():
            for outcome in OUTCOMES:
                self.jobs.labels(job_type, queue, outcome)
            self.duration.labels(job_type, queue)
        for queue in self.queues:
            self.wait.labels(queue)
        for op in REDIS_OPS:
            self.redis_errors.labels(op)
        for hook in HOOKS:
            self.middleware_errors.labels(hook)

    # -- wiring --------------------------------------------------------------------------------

    def track(self, in_flight: Callable[[], int], pool_size: int | None = None) -> None:
        """Read in-flight jobs from `in_flight` from now on (and set the pool size, if given)."""
        self._in_flight = in_flight
        if pool_size is not None:
            self.pool_size.set(pool_size)

    def watch_depths(self, broker: "Broker", *, timeout: float = 1.0) -> None:
        """Report geoq_queue_depth, read from Redis through `broker` at each scrape (none until then)."""
        self.depth.broker, self.depth.timeout = broker, timeout

    # -- counting: the middleware hooks ---------------------------------------------------------

    def worker_started(self, worker: WorkerInfo) -> None:
        """Read in-flight jobs, the pool's size and Redis's time from this worker from now on."""
        self.track(worker.in_flight, worker.concurrency)
        self._now = worker.now

    def before_run(self, job: Job) -> None:
        """A run starts: its wait since the job could first run (enqueue, or due time when delayed
        or retried), both times Redis's (no host's clock error). The due or enqueue time is read
        from the fields, not Job.ready_at: this runs for every job."""
        ready = job.enqueued_at if job.due_at is None else job.due_at
        if ready > 0:
            series = self._waits.get(job.queue) or self._wait_of(job.queue)
            series.observe(max(0.0, self._now() - ready))  # producers' clocks may run ahead

    def after_run(self, job: Job, outcome: Outcome) -> None:
        """One delivery ended: a run (its duration observed too) or a burial as fetched."""
        state = outcome.state   # keyed by state, not Outcome.label, and Outcome.ran read as its fields: no calls
        if state == INTERRUPTED:
            return  # not an outcome of the job: it is back in its queue
        key = (job.type, job.queue, state)
        count = self._counts.get(key) or _remember(self._counts, key, self._count_of(*key))
        count.inc()
        if state != DEAD or outcome.reason not in UNRUN:  # ran: a burial as fetched has no duration
            pair = key[:2]
            duration = self._durations.get(pair) or _remember(self._durations, pair, self._duration_of(*pair))
            duration.observe(max(0.0, outcome.duration))

    # The series of a (type, queue[, outcome]) are looked up once, then kept: labels() builds
    # tuples and maps unknown names on every call, and this runs for every job.

    def _count_of(self, job_type: str, queue: str, state: str) -> Count:
        return self.jobs.labels(self.type_label(job_type), self.queue_label(queue), label_of(state))

    def _duration_of(self, job_type: str, queue: str) -> Buckets:
        return self.duration.labels(self.type_label(job_type), self.queue_label(queue))

    def _wait_of(self, queue: str) -> Buckets:
        return _remember(self._waits, queue, self.wait.labels(self.queue_label(queue)))

    def buried(self, queue: str, job_type: str | None) -> None:
        """A job buried outside any run: a dead worker's, by this worker's reaper after
        max_deliveries, or one whose expiry passed before it was promoted."""
        self.jobs.labels(self.type_label(job_type), self.queue_label(queue), "dead").inc()

    def fetched(self, count: int) -> None:
        self.fetch_batch.observe(count)

    def redis_error(self, op: str) -> None:
        self.redis_errors.labels(op).inc()

    def fenced(self, count: int) -> None:
        self.fenced_outcomes.inc(count)

    def reaped(self, count: int) -> None:
        self.reaped_jobs.inc(count)

    def hook_failed(self, hook: str, error: BaseException) -> None:
        self.middleware_errors.labels(hook).inc()

    def limited(self, route: str, limit: str) -> None:
        self.limited_jobs.labels(self.type_label(route), limit).inc()

    def blocked(self, seconds: float) -> None:
        self.hub_blocked.inc(max(0.0, seconds))

    # -- labels --------------------------------------------------------------------------------

    def type_label(self, job_type: str | None) -> str:
        return job_type if job_type in self.types else UNKNOWN

    def queue_label(self, queue: str | None) -> str:
        return queue if queue in self._known_queues else UNKNOWN
