"""What a run's end means for its job: a typed Outcome, and the rule that decides it. Pure.

No Redis, no clock of its own, no gevent: the executor turns its timer's
expiry into ``JobTimeout`` before it asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from geoq import backoff
from geoq.errors import Fail, JobTimeout, Retry
from geoq.job import Job

SUCCEEDED, RETRY, DEAD, INTERRUPTED, CANCELLED = "succeeded", "retry", "dead", "interrupted", "cancelled"
STATES = (SUCCEEDED, RETRY, DEAD, INTERRUPTED, CANCELLED)
# Dead reasons given to a job that never ran: it was buried as fetched.
UNRUN = frozenset({"undecodable", "not_a_job", "unknown_type", "oversize", "expired"})
_LABELS = {RETRY: "retried"}   # the word geoq's metrics and log lines have always used


@dataclass(slots=True)   # not frozen: a frozen dataclass's __init__ costs 1.4 us more, on every job
class Outcome:
    """How one run ended, as middleware sees it in after_run. Read it; do not change it: every
    middleware after yours sees the same value.

    state      succeeded | retry (it runs again after `delay` seconds) | dead (see `reason`)
               | interrupted (a stop cut the run short; the job goes back to its queue and the
               run does not count) | cancelled (Client.cancel interrupted the run; never retried)
    error      one line naming the exception (retry, dead); None when it succeeded
    traceback  the failed run's formatted traceback (geoq.tracebacks), bounded, no locals
    result     what the handler returned (succeeded)
    duration   seconds the run took, middleware's before_run included; 0 for a job never run
    exception  the exception itself, for reporters such as Sentry or a tracer (not stored)
    """

    state: str
    error: str | None = None
    traceback: str | None = None
    result: Any = None
    duration: float = 0.0
    reason: str | None = None
    delay: float | None = None
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The outcome's word in metrics and log lines: succeeded, retried, dead, interrupted."""
        return label_of(self.state)

    @property
    def ran(self) -> bool:
        """False for a job buried as fetched, without a run (undecodable, unknown type, oversize)."""
        return not (self.state == DEAD and self.reason in UNRUN)


def label_of(state: str) -> str:
    """Outcome.label of an outcome in `state`: for callers that key by state on every job."""
    return _LABELS.get(state, state)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A route's retries: how many after the first failed run, and the backoff between runs."""

    max_retries: int = 5
    base: float = 1.0
    max: float = 600.0
    jitter: str = "full"


def describe(error: BaseException) -> str:
    """One line naming an exception: type and message, never its locals."""
    if isinstance(error, JobTimeout):
        return "Timeout: handler ran past its timeout"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:500]}" if text else type(error).__name__


def classify(job: Job, policy: RetryPolicy, error: BaseException | None, result: Any = None,
             rand: Callable[[], float] | None = None, traceback: str | None = None,
             duration: float = 0.0) -> Outcome:
    """The Outcome of run number job.attempt, which returned result or raised error after
    `duration` seconds (carried, not judged).

    A run that raises is retried while attempt <= max_retries (so at most
    max_retries + 1 runs raise); Fail dead-letters at once; Retry chooses its delay.
    `traceback` (the error's, formatted by the caller) rides on a retry or dead outcome.
    """
    if error is None:
        return Outcome(SUCCEEDED, result=result, duration=duration)
    if isinstance(error, Fail):
        return Outcome(DEAD, f"Fail: {error.reason}", traceback, None, duration, "fail", exception=error)
    max_retries = policy.max_retries if job.max_retries is None else job.max_retries
    text = describe(error)
    if job.attempt > max_retries:
        return Outcome(DEAD, text, traceback, None, duration, "max_retries", exception=error)
    return Outcome(RETRY, text, traceback, None, duration, delay=_delay(job, policy, error, rand), exception=error)


def _delay(job: Job, policy: RetryPolicy, error: BaseException, rand: Callable[[], float] | None) -> float:
    if isinstance(error, Retry) and error.delay is not None:
        return error.delay
    kwargs = {"rand": rand} if rand is not None else {}
    return backoff.delay(job.attempt, policy.base, policy.max, policy.jitter, **kwargs)
