"""The one seam that observes and shapes every job, in the producer and in the worker.

geoq's own Prometheus metrics and job log lines are middleware on this seam; so
are users' hooks (Sentry, audit trails, tenancy) and the optional OpenTelemetry
tracing (``geoq.contrib.otel``). Subclass ``Middleware`` and override only the
hooks you need: every hook is a no-op here, and a ``Chain`` calls only the hooks
a middleware overrides, so an unused hook costs nothing per job.

Job hooks (DESIGN.md section 10)::

    before_enqueue(job) -> job     producer, before the job is encoded; may return a changed job
                                   (dataclasses.replace(job, meta=...))
    worker_started(worker)         once Redis answers, before the first fetch
    before_run(job)                in the job's greenlet, under its timeout; may raise Fail or Retry
    after_run(job, outcome)        once per run, however it ended (see geoq.outcome.Outcome)
    worker_stopping(worker)        once no job of this worker runs any more, before it deregisters

Worker events (geoq's metrics use them; rarely needed elsewhere)::

    fetched(count)                 one fetch round trip moved `count` jobs
    redis_error(op)                a Redis operation failed and will be retried (op: fetch, settle, ...)
    fenced(count)                  outcomes dropped: their jobs were no longer this worker's
    reaped(count)                  jobs this worker's reaper returned from dead workers
    buried(queue, job_type)        a dead worker's job buried after max_deliveries (no run of it ended)
    limited(route, limit)          a job held back by a route's limit (rate, concurrency, key_rate,
                                   key_concurrency) or paused with its key (paused_key)
    hook_failed(hook, error)       another middleware's hook raised

A hook that raises is logged and reported to ``hook_failed`` (which geoq's
metrics count as ``geoq_middleware_errors_total{hook}``); it never loses a job
or stops the worker. Only ``before_run`` raising ``geoq.Fail`` or ``geoq.Retry``
changes a job's fate, as the handler raising it would. Hooks run in this order,
``after_run`` and ``worker_stopping`` in reverse, so the first middleware wraps
the others as the outermost layer.

Pure: imports no gevent, no Redis and no worker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from geoq.errors import Fail, Retry
from geoq.job import Job

if TYPE_CHECKING:
    from geoq.outcome import Outcome

log = logging.getLogger(__name__)

HOOKS = ("before_enqueue", "worker_started", "before_run", "after_run", "worker_stopping",
         "fetched", "redis_error", "fenced", "reaped", "buried", "hook_failed", "limited")
REVERSED = frozenset({"after_run", "worker_stopping"})
REPEAT_LOG = 60.0   # seconds between log lines for a hook that keeps raising


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a middleware learns of the worker it runs in.

    `now()` is Redis's time as the worker knows it (its clock is synced with Redis), the
    time every stored timestamp uses; `in_flight()` counts the jobs running at this moment.
    """

    id: str
    queues: tuple[str, ...]
    concurrency: int
    now: Callable[[], float]
    in_flight: Callable[[], int]


class Middleware:
    """Base class of every middleware: each hook is optional and does nothing here."""

    def before_enqueue(self, job: Job) -> Job:
        return job

    def worker_started(self, worker: WorkerInfo) -> None:
        pass

    def before_run(self, job: Job) -> None:
        pass

    def after_run(self, job: Job, outcome: "Outcome") -> None:
        pass

    def worker_stopping(self, worker: WorkerInfo) -> None:
        pass

    def fetched(self, count: int) -> None:
        pass

    def redis_error(self, op: str) -> None:
        pass

    def fenced(self, count: int) -> None:
        pass

    def reaped(self, count: int) -> None:
        pass

    def buried(self, queue: str, job_type: str | None) -> None:
        pass

    def hook_failed(self, hook: str, error: BaseException) -> None:
        pass

    def limited(self, route: str, limit: str) -> None:
        pass


class Chain:
    """Middleware in order, each hook called on those that override it, every call guarded.

    Built once per process (the worker's survives its fenced restarts). Thread-safe for
    calls; the repeat-log bookkeeping may lose a count under a race, never a job.
    """

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        for m in self.middleware:
            if not isinstance(m, Middleware):
                raise TypeError(f"middleware must be geoq.Middleware instances, got {type(m).__name__}")
        self._hooks = {name: self._overriding(name) for name in HOOKS}
        self._enqueue = self._hooks["before_enqueue"]
        self._before_run = self._hooks["before_run"]
        self._after_run = self._hooks["after_run"]
        self._last_logged: dict[tuple[int, str], float] = {}

    def _overriding(self, name: str) -> tuple[Callable[..., Any], ...]:
        base = getattr(Middleware, name)
        found = [getattr(m, name) for m in self.middleware if getattr(type(m), name, base) is not base]
        return tuple(reversed(found) if name in REVERSED else found)

    def __bool__(self) -> bool:
        return bool(self.middleware)

    def __len__(self) -> int:
        return len(self.middleware)

    # -- job hooks ------------------------------------------------------------------------------

    def before_enqueue(self, job: Job) -> Job:
        """The job each producer-side hook returns, in turn; a hook that raises or returns
        something other than a Job is reported and its change skipped."""
        for hook in self._enqueue:
            try:
                changed = hook(job)
            except Exception as e:
                self._failed(hook, "before_enqueue", e)
                continue
            if isinstance(changed, Job):
                job = changed
            else:
                self._failed(hook, "before_enqueue", TypeError(f"returned {type(changed).__name__}, not a Job"))
        return job

    def before_run(self, job: Job) -> None:
        """Fail and Retry raised by a hook propagate: they decide the run, as from the handler."""
        for hook in self._before_run:
            try:
                hook(job)
            except (Fail, Retry):
                raise
            except Exception as e:
                self._failed(hook, "before_run", e)

    def after_run(self, job: Job, outcome: "Outcome") -> None:
        for hook in self._after_run:
            try:
                hook(job, outcome)
            except Exception as e:
                self._failed(hook, "after_run", e)

    def worker_started(self, worker: WorkerInfo) -> None:
        self._call("worker_started", worker)

    def worker_stopping(self, worker: WorkerInfo) -> None:
        self._call("worker_stopping", worker)

    # -- worker events --------------------------------------------------------------------------

    def fetched(self, count: int) -> None:
        self._call("fetched", count)

    def redis_error(self, op: str) -> None:
        self._call("redis_error", op)

    def fenced(self, count: int) -> None:
        self._call("fenced", count)

    def reaped(self, count: int) -> None:
        self._call("reaped", count)

    def buried(self, queue: str, job_type: str | None) -> None:
        self._call("buried", queue, job_type)

    def limited(self, route: str, limit: str) -> None:
        self._call("limited", route, limit)

    # -- failures -------------------------------------------------------------------------------

    def _call(self, name: str, *args: Any) -> None:
        for hook in self._hooks[name]:
            try:
                hook(*args)
            except Exception as e:
                self._failed(hook, name, e)

    def _failed(self, hook: Callable[..., Any], name: str, error: Exception) -> None:
        """Log (the first time, then at most once a minute per middleware and hook) and report."""
        owner = getattr(hook, "__self__", hook)
        key, now = (id(owner), name), time.monotonic()
        if now - self._last_logged.get(key, -REPEAT_LOG) >= REPEAT_LOG:
            self._last_logged[key] = now
            log.error("middleware %s.%s raised (ignored; the job goes on): %s: %s", type(owner).__name__, name,
                      type(error).__name__, error, exc_info=error)
        for report in self._hooks["hook_failed"]:
            try:
                report(name, error)
            except Exception as e:  # not reported again: a failing reporter would loop
                log.error("middleware %s.hook_failed raised: %s", type(getattr(report, "__self__", report)).__name__, e)


NO_EVENTS = Chain()   # the default of every component that reports to middleware: nobody listens


def chain(middleware: Sequence[Middleware] | Chain | None) -> Chain:
    """A Chain of `middleware` (an existing Chain is returned as it is)."""
    if isinstance(middleware, Chain):
        return middleware
    return Chain(middleware or ())
