"""One job's run: decode, route, run under a Timeout, classify, hand the settlement on, tell the middleware.

Every delivery this executor takes gets exactly one after_run: a run that ends,
a job buried as fetched (its Outcome says it never ran), and a run a stop
interrupts (state "interrupted": the job goes back to its queue, the run does not count).

Job control: a job whose expiry has passed when it is fetched is buried as fetched, reason
"expired"; a run whose job is cancelled is interrupted by `cancel(id)`, which throws
JobCancelled into the handler's greenlet, and settles `cancelled` (never retried). A unique
job's settlement names its lock, so the key's window starts when it ends.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, NamedTuple

import gevent

from geoq import records
from geoq import tracebacks
from geoq.broker.broker import Ack, Bury, Cancelled, RetryLater, Unique
from geoq.errors import InvalidJob, JobCancelled, JobTimeout
from geoq.job import Job
from geoq.middleware import NO_EVENTS, Chain
from geoq.outcome import CANCELLED, DEAD, INTERRUPTED, RETRY, SUCCEEDED, Outcome, classify
from geoq.routing import Route, Router

Settle = Callable[[str, Any], None]  # (queue, Ack | RetryLater | Bury | Cancelled)


class Prepared(NamedTuple):
    """A fetched envelope made ready to run, or already judged dead (route is None then).
    A NamedTuple: built for every job fetched, and a frozen dataclass costs three times as much."""

    queue: str
    envelope: bytes
    job: Job | None
    route: Route | None
    burial: Bury | None = None
    verdict: Outcome | None = None   # a burial's outcome, for the middleware


class Executor:
    """Runs prepared jobs and reports each outcome to `settle` (the Settler's put)."""

    def __init__(self, router: Router, settle: Settle, *, max_payload: int, keep: float,
                 clock: Callable[[], float], events: Chain = NO_EVENTS) -> None:
        self.router = router
        self.clock = clock   # Redis's time (RedisClock.now): history, due and death times are stored
        self.settle = settle
        self.max_payload = max_payload
        self.keep = keep
        self.events = events
        # id -> the greenlet running its handler, only while the handler runs: a cancel is
        # thrown only there, never into a settlement or the runner's next job.
        self.running: dict[str, Any] = {}  # greenlets (gevent.getcurrent())

    def prepare(self, queue: str, envelope: bytes) -> Prepared:
        """Decode and route; bad input becomes a burial with its reason instead of an error."""
        if len(envelope) > self.max_payload:
            return self._reject(queue, envelope, None, "oversize",
                                f"job is {len(envelope)} bytes; the limit is {self.max_payload}")
        try:
            body = records.parse(envelope)
            route = self.router.get(body.get("t"))
            job = records.from_body(body, queue, run=route is not None, options=route.options if route else None)
        except InvalidJob as e:
            return self._reject(queue, envelope, None, getattr(e, "reason", "not_a_job"), str(e))
        if route is None:  # never runs: its attempt stays the runs it made
            return self._reject(queue, envelope, job, "unknown_type", f"no route for job type {job.type!r}")
        if job.control is not None and job.expires_at is not None and job.expires_at <= self.clock():
            return self._reject(queue, envelope, replace(job, attempt=job.attempt - 1), "expired",
                                f"Expired: not started by its expiry at {job.expires_at:.3f}")
        return Prepared(queue, envelope, job, route)

    def running_state(self, p: Prepared) -> tuple[str, str]:
        assert p.job is not None
        return p.job.id, records.encode_state("running", p.job.attempt, None, p.job.last_error)

    def run(self, p: Prepared) -> None:
        """Run one prepared job to its settlement. Never raises for the job's own failures."""
        if p.burial is not None:
            self.settle(p.queue, p.burial)
            assert p.verdict is not None
            self.events.after_run(p.job or _unreadable(p), p.verdict)
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
        outcome, done = self._judge(job, route, error, result, time.monotonic() - started)
        self.settle(p.queue, self._settlement(p, job, outcome, done))
        self.events.after_run(job, outcome)

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
        self.settle(p.queue, Cancelled(p.envelope, job.id, done, _unique(job)))
        self.events.after_run(job, Outcome(CANCELLED, duration=duration))

    def _judge(self, job: Job, route: Route, error: BaseException | None, result: Any,
               duration: float) -> tuple[Outcome, bytes]:
        """The run's Outcome, and the done record a success leaves (b"" when results are not kept);
        a result that cannot be stored is the handler's failure."""
        done = b""
        if error is None and self.keep > 0:
            try:
                done = records.encode_done("succeeded", job.attempt, job.last_error, result, None, job.type)
            except (TypeError, ValueError) as e:
                error, result = InvalidJob(f"handler returned a result that is not JSON: {e}"), None
        if error is None:
            return classify(job, route.retry, None, result, duration=duration), done
        trace = tracebacks.format_failure(error)  # a timeout's shows where the handler was
        if isinstance(error, gevent.Timeout):
            judged: BaseException = JobTimeout(job.timeout or route.timeout)
            judged.__cause__ = error
            error = judged
        return classify(job, route.retry, error, traceback=trace, duration=duration), done

    def _call(self, job: Job, route: Route) -> tuple[BaseException | None, Any]:
        """The handler's result or exception; the middleware's before_run runs under the same timer."""
        timer = gevent.Timeout(job.timeout or route.timeout)
        timer.start()
        self.running[job.id] = gevent.getcurrent()
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
            self.running.pop(job.id, None)
            timer.close()

    def _settlement(self, p: Prepared, job: Job, outcome: Outcome, done: bytes) -> Ack | RetryLater | Bury:
        if outcome.state == SUCCEEDED:  # the common case: no call for the lock of a job that has none
            return Ack(p.envelope, job.id, done) if job.control is None else Ack(p.envelope, job.id, done,
                                                                                 _unique(job))
        error = outcome.error or ""
        now = self.clock()
        history = job.history + ((round(now, 3), error),)
        if outcome.state == RETRY:
            delay = outcome.delay or 0.0
            again = replace(job, history=history, due_at=now + delay)
            return RetryLater(p.envelope, records.encode(again, records.NO_LIMIT), delay, job.id, job.attempt,
                              records.state_detail(error, outcome.traceback))
        assert outcome.state == DEAD
        return self._burial(p.queue, p.envelope, replace(job, history=history), outcome.reason or "", error,
                            outcome.traceback)

    def _reject(self, queue: str, envelope: bytes, job: Job | None, reason: str, error: str) -> Prepared:
        return Prepared(queue, envelope, job, None, self._burial(queue, envelope, job, reason, error),
                        Outcome(DEAD, error, reason=reason))

    def _burial(self, queue: str, envelope: bytes, job: Job | None, reason: str, error: str,
                traceback: str | None = None) -> Bury:
        job_id = job.id if job else (records.peek_id(envelope) or "")
        attempts = job.attempt if job else 0
        record = records.encode_dead(queue, job, job_id, reason, error, self.clock(), traceback)
        done = records.encode_done("dead", attempts, error, None, reason, job.type if job else None, traceback)
        return Bury(envelope, record, records.is_utf8(envelope), job_id, done, _unique(job))


def _unique(job: Job | None) -> Unique | None:
    """The lock a unique job releases when it ends (None for every other job)."""
    if job is None or job.unique_key is None:
        return None
    return job.unique_key, float(job.unique_for or 0)


def _unreadable(p: Prepared) -> Job:
    """What is known of a job buried because it could not be read: its id, if the bytes show one."""
    return Job(id=records.peek_id(p.envelope) or "?", type="?", queue=p.queue, payload=None)
