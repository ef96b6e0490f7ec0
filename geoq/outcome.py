"""What a run's end means for its job. Pure: no Redis, no clock of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

from gevent import Timeout

from geoq import backoff
from geoq.errors import Fail, Retry
from geoq.job import Job
from geoq.routing import Route


@dataclass(frozen=True, slots=True)
class Succeeded:
    result: Any


@dataclass(frozen=True, slots=True)
class RetryAt:
    delay: float
    error: str
    traceback: str | None = None   # the failed run's, as geoq.tracebacks formats it


@dataclass(frozen=True, slots=True)
class Dead:
    reason: str
    error: str
    traceback: str | None = None   # the last run's, as geoq.tracebacks formats it


Outcome = Union[Succeeded, RetryAt, Dead]


def describe(error: BaseException) -> str:
    """One line naming an exception: type and message, never its locals."""
    if isinstance(error, Timeout):
        return "Timeout: handler ran past its timeout"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:500]}" if text else type(error).__name__


def classify(job: Job, route: Route, error: BaseException | None, result: Any = None,
             rand: Callable[[], float] | None = None, traceback: str | None = None) -> Outcome:
    """Succeeded, RetryAt or Dead for run number job.attempt that returned result or raised error.

    A run that raises is retried while attempt <= max_retries (so at most
    max_retries + 1 runs raise); Fail dead-letters at once; Retry chooses its delay.
    `traceback` (the error's, formatted by the caller) rides on a RetryAt or Dead.
    """
    if error is None:
        return Succeeded(result)
    if isinstance(error, Fail):
        return Dead("fail", f"Fail: {error.reason}", traceback)
    max_retries = route.max_retries if job.max_retries is None else job.max_retries
    text = describe(error)
    if job.attempt > max_retries:
        return Dead("max_retries", text, traceback)
    if isinstance(error, Retry) and error.delay is not None:
        return RetryAt(error.delay, text, traceback)
    b = route.backoff
    kwargs = {"rand": rand} if rand is not None else {}
    return RetryAt(backoff.delay(job.attempt, b.base, b.max, b.jitter, **kwargs), text, traceback)
