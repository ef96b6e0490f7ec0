"""A job's run apart from how its handler is timed: prepare, judge, and the settlement to write.

`prepare` decodes and routes an envelope (bad input, and a job whose expiry has passed,
becomes a burial with its reason),
`judge` turns a run's end into its Outcome and done record, and `settlement` into the
Ack, RetryLater or Bury the broker writes (a unique job's names its lock, so the key's
window starts when the job ends). Gevent-free, so that the worker's executor (which
times handlers with gevent.Timeout) and the test harness (geoq.testing, which runs them in
an unpatched process) share one rule for retries, deaths and results.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, NamedTuple

from geoq import records
from geoq import tracebacks
from geoq.broker.broker import Ack, Bury, RetryLater, Unique
from geoq.errors import InvalidJob
from geoq.job import Job
from geoq.outcome import DEAD, RETRY, SUCCEEDED, Outcome, classify
from geoq.routing import Route, Router


class Prepared(NamedTuple):
    """A fetched envelope made ready to run, or already judged dead (route is None then).
    A NamedTuple: built for every job fetched, and a frozen dataclass costs three times as much."""

    queue: str
    envelope: bytes
    job: Job | None
    route: Route | None
    burial: Bury | None = None
    verdict: Outcome | None = None   # a burial's outcome, for the middleware


class Judge:
    """Prepares fetched envelopes and judges the runs' ends. `clock` is Redis's time (RedisClock.now,
    or the harness's clock): history, due and death times are stored."""

    def __init__(self, router: Router, *, max_payload: int, keep: float, clock: Callable[[], float]) -> None:
        self.router = router
        self.clock = clock
        self.max_payload = max_payload
        self.keep = keep

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

    def judge(self, job: Job, route: Route, error: BaseException | None, result: Any, duration: float,
              trace: str | None = None) -> tuple[Outcome, bytes]:
        """The run's Outcome, and the done record a success leaves (b"" when results are not kept);
        a result that cannot be stored is the handler's failure. `trace` is the failure's formatted
        traceback when the caller formatted it before translating the error (a timeout)."""
        done = b""
        if error is None and self.keep > 0:
            try:
                done = records.encode_done("succeeded", job.attempt, job.last_error, result, None, job.type)
            except (TypeError, ValueError) as e:
                error, result = InvalidJob(f"handler returned a result that is not JSON: {e}"), None
        if error is None:   # classify's first case, without its call: most runs succeed
            return Outcome(SUCCEEDED, result=result, duration=duration), done
        trace = trace if trace is not None else tracebacks.format_failure(error)
        return classify(job, route.retry, error, traceback=trace, duration=duration), done

    def settlement(self, p: Prepared, job: Job, outcome: Outcome, done: bytes) -> Ack | RetryLater | Bury:
        if outcome.state == SUCCEEDED:  # the common case: no call for the lock of a job that has none
            return Ack(p.envelope, job.id, done) if job.control is None else Ack(p.envelope, job.id, done,
                                                                                 unique_of(job))
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
        return Bury(envelope, record, records.is_utf8(envelope), job_id, done, unique_of(job))


def unique_of(job: Job | None) -> Unique | None:
    """The lock a unique job releases when it ends (None for every other job)."""
    if job is None or job.unique_key is None:
        return None
    return job.unique_key, float(job.unique_for or 0)


def unreadable(p: Prepared) -> Job:
    """What is known of a job buried because it could not be read: its id, if the bytes show one."""
    return Job(id=records.peek_id(p.envelope) or "?", type="?", queue=p.queue, payload=None)
