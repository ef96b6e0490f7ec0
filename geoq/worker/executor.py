"""One job's run: decode, route, run under a deadline, classify, hand the settlement on, tell the middleware.

Every delivery this executor takes gets exactly one after_run: a run that ends,
a job buried as fetched (its Outcome says it never ran), and a run a stop
interrupts (state "interrupted": the job goes back to its queue, the run does not count).
A job a route's limit holds back (geoq.worker.limiter) is prepared but never taken: it did
not run, gets no hook, and is delivered again. A run an adaptive route's server asked to
slow down ends in a retry outcome whose job waits for its key's pause, its run not counted.

Job control: a job whose expiry has passed when it is fetched is buried as fetched, reason
"expired"; a run whose job is cancelled is interrupted by `cancel(id)`, which throws
JobCancelled into the handler's greenlet, and settles `cancelled` (never retried). A unique
job's settlement names its lock, so the key's window starts when it ends.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import gevent

from geoq import records, tracebacks
from geoq.broker.broker import Cancelled, RetryLater
from geoq.errors import JobCancelled, JobTimeout
from geoq.job import Job
from geoq.middleware import NO_EVENTS, Chain
from geoq.outcome import CANCELLED, INTERRUPTED, RETRY, Outcome, describe
from geoq.routing import Route, Router
from geoq.runs import Judge, Prepared, unique_of, unreadable
from geoq.worker.deadlines import Deadlines

__all__ = ["Executor", "Prepared", "Settle"]   # Prepared lives in geoq.runs; the worker imports it from here

Settle = Callable[[str, Any], None]  # (queue, Ack | RetryLater | Bury | Cancelled)
# (prepared, the run's error) -> the move that pauses the job, or None: see geoq.worker.limiter.throttled
Throttle = Callable[[Prepared, BaseException], "RetryLater | None"]


class Executor(Judge):
    """Runs prepared jobs and reports each outcome to `settle` (the Settler's put)."""

    def __init__(self, router: Router, settle: Settle, *, max_payload: int, keep: float,
                 clock: Callable[[], float], events: Chain = NO_EVENTS, throttle: Throttle | None = None) -> None:
        super().__init__(router, max_payload=max_payload, keep=keep, clock=clock)
        self.throttle = throttle   # set when some route has limits
        self.settle = settle
        self.events = events
        # id -> the greenlet running its handler, only while the handler runs: a cancel is
        # thrown only there, never into a settlement or the runner's next job.
        self.running: dict[str, Any] = {}  # greenlets (gevent.getcurrent())
        self.deadlines = Deadlines()

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
        except JobCancelled:
            self._cancelled(p, job, time.monotonic() - started)
            return
        except BaseException:  # killed by a stop (GreenletExit, the stop's deadline): it goes back
            self.events.after_run(job, Outcome(INTERRUPTED, duration=time.monotonic() - started))
            raise
        if error is not None and route.limit is not None and self.throttle is not None:
            paused = self.throttle(p, error)
            if paused is not None:  # the server asked to slow down: the job waits, the run not counted
                self.settle(p.queue, paused)
                self.events.after_run(job, Outcome(RETRY, describe(error), duration=time.monotonic() - started,
                                                   delay=paused.delay, exception=error))
                return
        if isinstance(error, gevent.Timeout):
            outcome, done = self._timed_out(job, route, error, time.monotonic() - started)
        else:   # judged with no call between: this runs for every job
            outcome, done = self.judge(job, route, error, result, time.monotonic() - started)
        self.settle(p.queue, self.settlement(p, job, outcome, done))
        self.events.after_run(job, outcome)

    def reject(self, p: Prepared, error: str) -> Prepared:
        """A prepared job made a burial instead (reason fail): its route's limits cannot read its payload."""
        return self._reject(p.queue, p.envelope, p.job, "fail", f"Fail: {error}")

    def cancel(self, job_id: str) -> bool:
        """Interrupt the handler running job_id, if it runs here: True if it does. The throw waits
        for the hub's next turn, and happens only if the handler is still running then."""
        glet = self.running.get(job_id)
        if glet is None:
            return False
        gevent.get_hub().loop.run_callback(self._throw, job_id, glet)
        return True

    def _throw(self, job_id: str, glet: Any) -> None:
        current = self.running.get(job_id)
        if current is not None and current is glet:  # suspended inside its handler (the hub runs this)
            current.throw(JobCancelled(job_id))

    def _cancelled(self, p: Prepared, job: Job, duration: float) -> None:
        keep = self.keep > 0
        done = records.encode_done("cancelled", job.attempt, job.last_error, None, None, job.type) if keep else b""
        self.settle(p.queue, Cancelled(p.envelope, job.id, done, unique_of(job)))
        self.events.after_run(job, Outcome(CANCELLED, duration=duration))

    def _timed_out(self, job: Job, route: Route, error: gevent.Timeout, duration: float) -> tuple[Outcome, bytes]:
        """Judge (geoq.runs) with the timer's expiry made JobTimeout, its traceback kept."""
        trace = tracebacks.format_failure(error)  # a timeout's shows where the handler was
        judged = JobTimeout(job.timeout or route.timeout)
        judged.__cause__ = error
        return self.judge(job, route, judged, None, duration, trace)

    def _call(self, job: Job, route: Route) -> tuple[BaseException | None, Any]:
        """The handler's result or exception; the middleware's before_run runs under the same deadline."""
        deadline = self.deadlines.start(job.timeout or route.timeout)
        self.running[job.id] = deadline.glet
        try:
            self.events.before_run(job)
            return None, route.handler(job)
        except gevent.Timeout as t:
            if t is not deadline.error:
                raise  # someone else's timeout (a shutdown deadline): not this job's failure
            return t, None
        except Exception as e:
            return e, None
        finally:
            self.running.pop(job.id, None)
            self.deadlines.end(deadline)
