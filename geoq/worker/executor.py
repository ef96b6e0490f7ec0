"""One job's run: decode, route, run under a Timeout, classify, hand the settlement on, tell the middleware.

Every delivery this executor takes gets exactly one after_run: a run that ends,
a job buried as fetched (its Outcome says it never ran), and a run a stop
interrupts (state "interrupted": the job goes back to its queue, the run does not count).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import gevent

from geoq import tracebacks
from geoq.errors import JobTimeout
from geoq.job import Job
from geoq.middleware import NO_EVENTS, Chain
from geoq.outcome import INTERRUPTED, Outcome
from geoq.routing import Route, Router
from geoq.runs import Judge, Prepared, unreadable

__all__ = ["Executor", "Prepared", "Settle"]   # Prepared lives in geoq.runs; the worker imports it from here

Settle = Callable[[str, Any], None]  # (queue, Ack | RetryLater | Bury)


class Executor(Judge):
    """Runs prepared jobs and reports each outcome to `settle` (the Settler's put)."""

    def __init__(self, router: Router, settle: Settle, *, max_payload: int, keep: float,
                 clock: Callable[[], float], events: Chain = NO_EVENTS) -> None:
        super().__init__(router, max_payload=max_payload, keep=keep, clock=clock)
        self.settle = settle
        self.events = events

    def run(self, p: Prepared) -> None:
        """Run one prepared job to its settlement. Never raises for the job's own failures."""
        if p.burial is not None:
            self.settle(p.queue, p.burial)
            assert p.verdict is not None
            self.events.after_run(p.job or unreadable(p), p.verdict)
            return
        job, route = p.job, p.route
        assert job is not None and route is not None
        started = time.monotonic()
        try:
            error, result = self._call(job, route)
        except BaseException:  # killed by a stop (GreenletExit, the stop's deadline): it goes back
            self.events.after_run(job, Outcome(INTERRUPTED, duration=time.monotonic() - started))
            raise
        outcome, done = self._judge(job, route, error, result, time.monotonic() - started)
        self.settle(p.queue, self.settlement(p, job, outcome, done))
        self.events.after_run(job, outcome)

    def _judge(self, job: Job, route: Route, error: BaseException | None, result: Any,
               duration: float) -> tuple[Outcome, bytes]:
        """Judge (geoq.runs) with the timer's expiry made JobTimeout, its traceback kept."""
        if not isinstance(error, gevent.Timeout):
            return self.judge(job, route, error, result, duration)
        trace = tracebacks.format_failure(error)  # a timeout's shows where the handler was
        judged = JobTimeout(job.timeout or route.timeout)
        judged.__cause__ = error
        return self.judge(job, route, judged, result, duration, trace)

    def _call(self, job: Job, route: Route) -> tuple[BaseException | None, Any]:
        """The handler's result or exception; the middleware's before_run runs under the same timer."""
        timer = gevent.Timeout(job.timeout or route.timeout)
        timer.start()
        try:
            self.events.before_run(job)
            return None, route.handler(job)
        except gevent.Timeout as t:
            if t is not timer:
                raise  # someone else's timeout (a shutdown deadline): not this job's failure
            return t, None
        except Exception as e:
            return e, None
        finally:
            timer.close()
